"""The simulation's settings: imaging physics (CTF, missing wedge), counts, SNR, poses.

The classes are the YAML sections ``simulation`` and ``simulation.ctf``: field names, defaults
and bounds come from the schema. The missing wedge is the study's one ``missing_wedge`` setting
(:func:`cryoavae.core.config.particle_wedge`), filled in by the workflow.
"""

from __future__ import annotations

from cryoavae.core.schema import section_dataclass


class CtfConfig(section_dataclass("simulation.ctf")):
    """Microscope CTF; a particle's defocus is uniform in ``[defocus_min_um, defocus_max_um]``."""


class SimulationConfig(
    section_dataclass(
        "simulation", nested={"ctf": CtfConfig}, extra=[("wedge_tilt_max_deg", float, None)]
    )
):
    """How many particles, how they are split and sharded, and the imaging physics.

    ``ctf`` may be given as a mapping (the YAML section); it is converted.
    ``wedge_tilt_max_deg``: the missing wedge of a tilt series about y through +- that angle
    (None: no wedge).
    ``snr`` is ``var(signal) / var(noise)``; None switches the noise off. Each particle is
    shifted after rotation by a Gaussian offset of sd ``shift_sd_angstrom`` per axis, cut at 3 sd
    (a picker's error); shifts are circular (a Fourier phase ramp; ``real_space``: zero-filled),
    so the box needs that margin.
    Orientations are uniform over all of SO(3) unless ``rotation_range_deg`` < 180 limits them to
    rotations by at most that angle (see :func:`cryoavae.geometry.rotations.random_rotations`).
    ``rotation`` (``fourier`` or ``real_space``) is how the map is turned: in Fourier space by the
    kernel the template matcher also uses, or in real space by cubic B-splines, so that matching
    can be scored on particles its own kernel did not make.
    """
