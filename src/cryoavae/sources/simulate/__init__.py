"""Simulated subtomograms: one small module per physical stage, composed in :mod:`.pipeline`.

Stages: :mod:`.rotation` (random poses, trilinear and Fourier-space rotation), :mod:`.ctf`,
:mod:`cryoavae.geometry.wedge` (the missing wedge, shared with the model and the averages),
:mod:`.noise` (SNR and normalisation); settings in :mod:`.config`.
Conventions: volumes are indexed ``(z, y, x)``, vectors are ``(x, y, z)``, the box centre is voxel
``d // 2``.
"""

from cryoavae.sources.simulate.config import CtfConfig, SimulationConfig
from cryoavae.sources.simulate.pipeline import (
    ParticlePlan,
    plan_shard,
    simulate_batch,
    simulate_shard,
)

__all__ = [
    "CtfConfig",
    "ParticlePlan",
    "SimulationConfig",
    "plan_shard",
    "simulate_batch",
    "simulate_shard",
]
