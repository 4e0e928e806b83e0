"""How a study's particles were acquired, as every stage that models it reads it: the missing
wedge of their tilt series and the microscope of their CTF.

The simulator, the model's forward model, the matcher and the averages each take these from here,
so they cannot disagree about what the particles measured.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["particle_microscope", "particle_wedge"]


def particle_wedge(config: Mapping) -> float | None:
    """The particles' missing wedge (``missing_wedge.tilt_max_deg``), or None where they have
    none: 2-D characters, or ``missing_wedge.enabled: false``. Every stage that models the wedge
    (simulator, model, matching, averages) reads it here, so they cannot disagree."""
    wedge = config["missing_wedge"]
    if config.get("particle_source") == "characters" or not wedge["enabled"]:
        return None
    return float(wedge["tilt_max_deg"])


def particle_microscope(config: Mapping) -> dict | None:
    """The microscope of the particles' CTF when the study simulated one (voxel size, voltage,
    Cs, amplitude contrast), else None: there is no CTF to match."""
    ctf = config["simulation"]["ctf"]
    if config.get("particle_source") != "simulate" or not ctf["enabled"]:
        return None
    keys = ("voltage_kv", "cs_mm", "amplitude_contrast")
    voxel = config["density"]["voxel_size_angstrom"]
    return {"voxel_size_angstrom": voxel, **{k: ctf[k] for k in keys}}
