"""Simulated subtomograms: one small module per physical stage, composed in :mod:`.pipeline`.

Stages: random poses and Fourier-space rotation (:mod:`cryoavae.geometry.rotations`,
:mod:`cryoavae.geometry.volume_rotation`), the CTF (:mod:`cryoavae.geometry.ctf`), the missing
wedge (:mod:`cryoavae.geometry.wedge`; all three shared with the model, matching and the
averages), :mod:`.noise` (SNR and normalisation); :mod:`.measure` composes the stages one by one
after a real-space rotation; settings in :mod:`.config`.
Conventions: volumes are indexed ``(z, y, x)``, vectors are ``(x, y, z)``, the box centre is voxel
``d // 2``.
"""

from cryoavae.sources.simulate.config import CtfConfig, SimulationConfig
from cryoavae.sources.simulate.pipeline import (
    ParticlePlan,
    plan_shard,
    prepare_maps,
    simulate_batch,
    simulate_shard,
)

__all__ = [
    "CtfConfig",
    "ParticlePlan",
    "SimulationConfig",
    "plan_shard",
    "prepare_maps",
    "simulate_batch",
    "simulate_shard",
]
