"""Simulated subtomograms: one small module per physical stage, composed in :mod:`.pipeline`.

Stages: :mod:`.rotation` (random poses, RELION angles, trilinear rotation), :mod:`.ctf`,
:mod:`.wedge` (missing wedge), :mod:`.noise` (SNR and normalisation). Conventions: volumes are
indexed ``(z, y, x)``, vectors are ``(x, y, z)``, the box centre is voxel ``d // 2``.
"""

from .pipeline import (
    CtfConfig,
    ParticlePlan,
    SimulationConfig,
    WedgeConfig,
    merge_particle_tables,
    plan_shard,
    simulate_batch,
    simulate_shard,
)

__all__ = [
    "CtfConfig",
    "ParticlePlan",
    "SimulationConfig",
    "WedgeConfig",
    "merge_particle_tables",
    "plan_shard",
    "simulate_batch",
    "simulate_shard",
]
