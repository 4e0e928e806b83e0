"""Simulated tomograms: a crowded sample, a dose-limited tilt series, a reconstruction.

One small module per physical stage, composed in :mod:`.pipeline`: :mod:`.sample` (particles
at random non-overlapping positions and orientations, contrast against vitreous ice),
:mod:`.geometry` (single-axis tilt projection and weighted back-projection), :mod:`.imaging`
(tilt order, dose, CTF, radiation damage, shot noise), :mod:`.truth` (the ground truth as
SHREC'21 and RELION particle lists); settings in :mod:`.config`. The particles are then cut out
by :mod:`cryoavae.sources.extract` like those of any other tomogram.
"""

from cryoavae.sources.tomogram.config import TomogramConfig
from cryoavae.sources.tomogram.pipeline import (
    SimulatedTomogram,
    TiltPlan,
    TomogramPlan,
    plan_tomogram,
    simulate_tilt_series,
    simulate_tomogram,
)

__all__ = [
    "SimulatedTomogram",
    "TiltPlan",
    "TomogramConfig",
    "TomogramPlan",
    "plan_tomogram",
    "simulate_tilt_series",
    "simulate_tomogram",
]
