"""A class's point group placed in its own map's frame, and how well the map obeys it.

``evaluation.symmetry`` names a class's point group as biology knows it (RuBisCO's half-assembly
C4, Hsp90's dimer C2). A deposited structure's symmetry axes lie anywhere in its coordinates, so
the group's rotations in scipy's standard orientation (n-fold axis along z) would count the wrong
copies as equivalent. The group is therefore turned into the map's frame first: the frame ``F``
whose elements ``F S F^T`` leave the map most like itself (mean Pearson correlation of the map and
the map turned by every element other than the identity, turned actively as the simulator turns a
particle, :func:`~cryoavae.geometry.volume_rotation.rotate_volumes`): random frames, then four
rounds of local refinement.

The fit also says whether the map obeys the named group at all: ``element_cc`` beside
``cc_at_15deg``, the map against itself turned by 15 degrees. A real symmetry scores above that
turn (the 10 A map of RuBisCO's half: 0.993 for its C4, 0.918 at 15 degrees); a small protein
at this voxel size scores about as high for any turn, so its orientation is only weakly defined
there whatever its point group.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.errors import InputError
from cryoavae.geometry.point_groups import symmetry_group
from cryoavae.geometry.volume_rotation import rotate_volumes

__all__ = ["SymmetryFit", "fit_point_group", "read_symmetry", "write_symmetry"]

log = logging.getLogger(__name__)

COARSE_BUDGET = 4000  # turned maps in the coarse search (frames x elements)
REFINE_STEPS_DEG = (8.0, 4.0, 2.0, 1.0)
REFINE_TRIALS = 48
CHUNK = 512  # turned maps held at once


@dataclass(frozen=True)
class SymmetryFit:
    group: str
    rotations: np.ndarray  # (k, 3, 3) the group in the map's frame, identity first
    frame: np.ndarray  # (3, 3) F: standard orientation -> the map's
    element_cc: float  # mean correlation of the map with itself turned by each non-identity element
    cc_at_15deg: float  # the same for random 15 degree turns: what "indistinguishable" means here

    def as_dict(self) -> dict:
        return {
            "group": self.group,
            "element_cc": round(self.element_cc, 4),
            "cc_at_15deg": round(self.cc_at_15deg, 4),
            "frame": np.round(self.frame, 6).tolist(),
            "rotations": np.round(self.rotations, 6).tolist(),
        }


def _unit(flat: np.ndarray) -> np.ndarray:
    flat = flat - flat.mean(axis=-1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-30)


def _self_cc(volume: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Correlation of ``volume`` with itself turned by each of ``rotations`` ``(r, 3, 3)``."""
    reference = _unit(volume.reshape(1, -1))[0]
    out = np.empty(len(rotations))
    for start in range(0, len(rotations), CHUNK):
        r = rotations[start : start + CHUNK]
        turned = rotate_volumes(volume, r, source_index=np.zeros(len(r), np.int64))
        out[start : start + CHUNK] = _unit(turned.reshape(len(r), -1)) @ reference
    return out


def _frame_scores(volume: np.ndarray, frames: np.ndarray, elements: np.ndarray) -> np.ndarray:
    """Mean self-correlation over ``elements`` ``(k, 3, 3)`` placed by each of ``frames``."""
    placed = np.einsum("fij,kjl,fml->fkim", frames, elements, frames)  # F S F^T
    return _self_cc(volume, placed.reshape(-1, 3, 3)).reshape(len(frames), len(elements)).mean(1)


def fit_point_group(volume: np.ndarray, group: str, seed: int, name: str = "map") -> SymmetryFit:
    """Place point group ``group`` (``C<n>``, ``D<n>``, ``T``, ``O``, ``I``) in the frame of
    ``volume`` ``(d, d, d)`` (centred on voxel ``d // 2``, as the study's maps are)."""
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"fit_point_group: expected a cubic map, got shape {volume.shape}")
    standard = symmetry_group(group)  # (k, 3, 3)
    keep = np.abs(np.einsum("kii->k", standard) - 3.0) > 1e-9
    identity_first = np.concatenate([standard[~keep], standard[keep]])
    rng = np.random.default_rng(seed)
    turns = Rotation.random(32, random_state=rng).as_rotvec()
    turns = Rotation.from_rotvec(
        turns / np.linalg.norm(turns, axis=1, keepdims=True) * np.radians(15)
    )
    cc_15 = float(_self_cc(volume, turns.as_matrix()).mean())
    elements = standard[keep]
    if len(elements) == 0:  # C1
        return SymmetryFit(group, identity_first, np.eye(3), 1.0, cc_15)
    n_frames = max(64, COARSE_BUDGET // len(elements))
    frames = np.concatenate(
        [np.eye(3)[None], Rotation.random(n_frames, random_state=rng).as_matrix()]
    )
    scores = _frame_scores(volume, frames, elements)
    best, best_score = frames[int(np.argmax(scores))], float(scores.max())
    for step in REFINE_STEPS_DEG:
        axes = rng.normal(size=(REFINE_TRIALS, 3))
        angles = np.radians(step) * rng.uniform(0.25, 1.0, size=(REFINE_TRIALS, 1))
        nudges = Rotation.from_rotvec(axes / np.linalg.norm(axes, axis=1, keepdims=True) * angles)
        trial = nudges.as_matrix() @ best
        trial_scores = _frame_scores(volume, trial, elements)
        if trial_scores.max() > best_score:
            best, best_score = trial[int(np.argmax(trial_scores))], float(trial_scores.max())
    placed = np.einsum("ij,kjl,ml->kim", best, identity_first, best)
    fit = SymmetryFit(group, placed, best, best_score, cc_15)
    if fit.element_cc <= fit.cc_at_15deg:  # the map barely obeys the group
        log.warning(
            "%s: the map matches itself turned by its %s elements at only %.3f, no better than "
            "turned by 15 degrees (%.3f): at this voxel size the map barely shows that symmetry",
            name,
            group,
            fit.element_cc,
            fit.cc_at_15deg,
        )
    return fit


def write_symmetry(path: str | os.PathLike, fits: dict[str, SymmetryFit]) -> None:
    """``{class: fit}`` as JSON (written to a temporary file, then renamed)."""
    text = json.dumps({name: fit.as_dict() for name, fit in fits.items()}, indent=1)
    write_text_atomic(path, text + "\n")


def read_symmetry(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{class: (k, 3, 3) rotations in the map's frame}`` from :func:`write_symmetry`'s file."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    groups = {}
    for name, entry in data.items():
        rotations = np.asarray(entry.get("rotations"), dtype=np.float64)
        if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
            raise InputError(f"{path}: class {name!r} has no (k, 3, 3) 'rotations'")
        groups[name] = rotations
    return groups
