"""The simulation's settings: imaging physics (CTF, missing wedge), counts, SNR, poses.

The classes are the YAML sections ``simulation``, ``simulation.ctf`` and
``simulation.missing_wedge``: field names, defaults and bounds come from the schema.
"""

from __future__ import annotations

from ..schema import section_dataclass


class CtfConfig(section_dataclass("simulation.ctf")):
    """Microscope CTF; a particle's defocus is uniform in ``[defocus_min_um, defocus_max_um]``."""


class WedgeConfig(section_dataclass("simulation.missing_wedge")):
    """Missing wedge of a tilt series about y through ``[-tilt_max_deg, tilt_max_deg]``."""


class SimulationConfig(
    section_dataclass("simulation", nested={"ctf": CtfConfig, "missing_wedge": WedgeConfig})
):
    """How many particles, how they are split and sharded, and the imaging physics.

    ``ctf`` and ``missing_wedge`` may be given as mappings (the YAML sections); they are converted.
    ``snr`` is ``var(signal) / var(noise)``; None switches the noise off. Each particle is
    shifted by up to ``shift_max_px`` voxels (uniform, independently per axis) after rotation;
    shifts are circular (a Fourier phase ramp), so keep them within the structure's margin.
    Orientations are uniform over all of SO(3) unless ``rotation_range_deg`` < 180 limits them to
    rotations by at most that angle (see :func:`.rotation.random_rotations`).
    """
