"""The simulation's settings: imaging physics (CTF, missing wedge), counts, SNR, poses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InputError


@dataclass(frozen=True)
class CtfConfig:
    """Microscope CTF; a particle's defocus is uniform in ``[defocus_min_um, defocus_max_um]``."""

    enabled: bool = True
    defocus_min_um: float = 2.0
    defocus_max_um: float = 4.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07

    def __post_init__(self) -> None:
        if not 0 <= self.defocus_min_um <= self.defocus_max_um:
            raise InputError(
                f"ctf.defocus_min_um/defocus_max_um are {self.defocus_min_um}/"
                f"{self.defocus_max_um}; expected 0 <= min <= max"
            )
        if not self.voltage_kv > 0 or not self.cs_mm >= 0:
            raise InputError(
                f"ctf.voltage_kv/cs_mm are {self.voltage_kv}/{self.cs_mm}; expected > 0 and >= 0"
            )
        if not 0 <= self.amplitude_contrast < 1:
            raise InputError(
                f"ctf.amplitude_contrast is {self.amplitude_contrast}; expected a value in [0, 1)"
            )


@dataclass(frozen=True)
class WedgeConfig:
    """Missing wedge of a tilt series about y through ``[-tilt_max_deg, tilt_max_deg]``."""

    enabled: bool = True
    tilt_max_deg: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.tilt_max_deg <= 90:
            raise InputError(
                f"missing_wedge.tilt_max_deg is {self.tilt_max_deg}; expected a value in [0, 90]"
            )


@dataclass(frozen=True)
class SimulationConfig:
    """How many particles, how they are split and sharded, and the imaging physics.

    ``ctf`` and ``missing_wedge`` may be given as mappings (the YAML sections); they are converted.
    ``snr`` is ``var(signal) / var(noise)``; ``math.inf`` switches the noise off. Each particle is
    shifted by up to ``shift_max_px`` voxels (uniform, independently per axis) after rotation;
    shifts are circular (a Fourier phase ramp), so keep them within the structure's margin.
    Orientations are uniform over all of SO(3) unless ``rotation_range_deg`` < 180 limits them to
    rotations by at most that angle (see :func:`.rotation.random_rotations`).
    """

    particles_per_class: int = 450
    unseen_particles_per_class: int = 100
    val_fraction: float = 0.2
    n_shards: int = 2
    snr: float = 1.0
    shift_max_px: float = 0.0
    rotation_range_deg: float = 180.0
    ctf: CtfConfig = field(default_factory=CtfConfig)
    missing_wedge: WedgeConfig = field(default_factory=WedgeConfig)
    batch_size: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.ctf, Mapping):
            object.__setattr__(self, "ctf", CtfConfig(**self.ctf))
        if isinstance(self.missing_wedge, Mapping):
            object.__setattr__(self, "missing_wedge", WedgeConfig(**self.missing_wedge))
        for key in ("particles_per_class", "unseen_particles_per_class", "n_shards", "batch_size"):
            value = getattr(self, key)
            low = 0 if key == "unseen_particles_per_class" else 1
            if int(value) != value or value < low:
                raise InputError(f"{key} is {value}; expected an integer >= {low}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"val_fraction is {self.val_fraction}; expected a value in [0, 1)")
        if not self.snr > 0:
            raise InputError(f"snr is {self.snr}; expected a positive number (inf: no noise)")
        if not 0 <= self.shift_max_px < 1e3:
            raise InputError(f"shift_max_px is {self.shift_max_px}; expected a value >= 0")
        if not 0 <= self.rotation_range_deg <= 180:
            raise InputError(
                f"rotation_range_deg is {self.rotation_range_deg}; expected a value in [0, 180]"
            )
