"""Simulated subtomograms: one small module per physical stage, composed in :mod:`.pipeline`.

Stages: :mod:`.rotation` (random poses, trilinear and Fourier-space rotation), :mod:`.ctf`,
:mod:`cryoavae.wedge` (the missing wedge, shared with the model and the averages), :mod:`.noise`
(SNR and normalisation); settings in :mod:`.config`.
Conventions: volumes are indexed ``(z, y, x)``, vectors are ``(x, y, z)``, the box centre is voxel
``d // 2``.
"""

from .config import CtfConfig, SimulationConfig, WedgeConfig
from .pipeline import ParticlePlan, plan_shard, simulate_batch, simulate_shard

__all__ = [
    "CtfConfig",
    "ParticlePlan",
    "SimulationConfig",
    "WedgeConfig",
    "plan_shard",
    "simulate_batch",
    "simulate_shard",
]
