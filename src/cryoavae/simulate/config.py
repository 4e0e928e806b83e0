"""The simulation's settings: imaging physics (CTF, missing wedge), counts, SNR, poses.

Field names are the YAML keys of ``simulation``, ``simulation.ctf`` and
``simulation.missing_wedge``; defaults and bounds come from the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InputError
from ..schema import check_fields, default, from_mapping

SECTION = "simulation"
CTF = "simulation.ctf"
WEDGE = "simulation.missing_wedge"


@dataclass(frozen=True)
class CtfConfig:
    """Microscope CTF; a particle's defocus is uniform in ``[defocus_min_um, defocus_max_um]``."""

    enabled: bool = default(CTF, "enabled")
    defocus_min_um: float = default(CTF, "defocus_min_um")
    defocus_max_um: float = default(CTF, "defocus_max_um")
    voltage_kv: float = default(CTF, "voltage_kv")
    cs_mm: float = default(CTF, "cs_mm")
    amplitude_contrast: float = default(CTF, "amplitude_contrast")

    def __post_init__(self) -> None:
        check_fields(self, CTF)
        if self.defocus_min_um > self.defocus_max_um:
            raise InputError(
                f"{CTF}.defocus_min_um = {self.defocus_min_um} is larger than defocus_max_um = "
                f"{self.defocus_max_um}"
            )


@dataclass(frozen=True)
class WedgeConfig:
    """Missing wedge of a tilt series about y through ``[-tilt_max_deg, tilt_max_deg]``."""

    enabled: bool = default(WEDGE, "enabled")
    tilt_max_deg: float = default(WEDGE, "tilt_max_deg")

    def __post_init__(self) -> None:
        check_fields(self, WEDGE)


@dataclass(frozen=True)
class SimulationConfig:
    """How many particles, how they are split and sharded, and the imaging physics.

    ``ctf`` and ``missing_wedge`` may be given as mappings (the YAML sections); they are converted.
    ``snr`` is ``var(signal) / var(noise)``; None switches the noise off. Each particle is
    shifted by up to ``shift_max_px`` voxels (uniform, independently per axis) after rotation;
    shifts are circular (a Fourier phase ramp), so keep them within the structure's margin.
    Orientations are uniform over all of SO(3) unless ``rotation_range_deg`` < 180 limits them to
    rotations by at most that angle (see :func:`.rotation.random_rotations`).
    """

    particles_per_class: int = default(SECTION, "particles_per_class")
    unseen_particles_per_class: int = default(SECTION, "unseen_particles_per_class")
    val_fraction: float = default(SECTION, "val_fraction")
    n_shards: int = default(SECTION, "n_shards")
    snr: float | None = default(SECTION, "snr")
    shift_max_px: float = default(SECTION, "shift_max_px")
    rotation_range_deg: float = default(SECTION, "rotation_range_deg")
    ctf: CtfConfig = CtfConfig()
    missing_wedge: WedgeConfig = WedgeConfig()
    batch_size: int = default(SECTION, "batch_size")

    def __post_init__(self) -> None:
        if isinstance(self.ctf, Mapping):
            object.__setattr__(self, "ctf", from_mapping(CtfConfig, self.ctf, CTF))
        if isinstance(self.missing_wedge, Mapping):
            wedge = from_mapping(WedgeConfig, self.missing_wedge, WEDGE)
            object.__setattr__(self, "missing_wedge", wedge)
        check_fields(self, SECTION)
