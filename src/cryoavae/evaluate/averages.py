"""Subtomogram averages from the model's orientations, and how good they are (FSC).

The test a cryo-ET user would apply to a pose: turn every particle of a class back by its
orientation and average (:func:`cryoavae.orientation.averaging.class_average`, missing-wedge
weighted).

The model's orientations are in its own canonical frame; when the true orientations are known
the frame is aligned with the reference's first
(:func:`~cryoavae.geometry.rotations.align_rotations` on the class's training particles), so the
average can be compared with the class's map, and with the average made from the true orientations
(the best these particles allow).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cryoavae.geometry.rotations import align_rotations, relion_angles_to_matrices
from cryoavae.inference.latents import INFERRED_ANGLES, INFERRED_SHIFTS
from cryoavae.orientation.averaging import class_average
from cryoavae.particles import ParticleImages

MAX_PER_CLASS = 1000  # a seeded draw of a larger class: the average is then already converged

log = logging.getLogger(__name__)


def fsc(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two volumes ``(d, d, d)``: shell frequencies (cycles per
    voxel, shells 1 .. d//2) and the correlation in each; ``mask`` (boolean, ``np.fft.fftn``
    order) keeps only those Fourier samples, e.g. the ones outside a missing wedge."""
    d = a.shape[-1]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.fft.fftfreq(d) * d
    radius = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2))
    shell = radius.astype(np.int64).ravel()
    keep = np.ones(shell.shape, bool) if mask is None else np.asarray(mask, bool).ravel()
    shell = np.where(keep, shell, shell.max() + 1)  # masked samples go to a shell never read
    cross = np.bincount(shell, (fa * np.conj(fb)).real.ravel())
    power_a = np.bincount(shell, (np.abs(fa) ** 2).ravel())
    power_b = np.bincount(shell, (np.abs(fb) ** 2).ravel())
    shells = np.arange(1, d // 2 + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = cross[shells] / np.sqrt(power_a[shells] * power_b[shells])
    return shells / d, np.nan_to_num(curve)


def resolution_angstrom(
    frequency: np.ndarray, curve: np.ndarray, threshold: float, voxel_size_angstrom: float
) -> float:
    """The resolution (Å) where ``curve`` first drops below ``threshold``, linearly between
    shells; the Nyquist limit when it never does, ``inf`` when the first shell is below."""
    below = np.flatnonzero(curve < threshold)
    if len(below) == 0:
        return 2.0 * voxel_size_angstrom
    i = int(below[0])
    if i == 0:
        return float("inf")
    f0, f1, c0, c1 = frequency[i - 1], frequency[i], curve[i - 1], curve[i]
    crossing = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(voxel_size_angstrom / crossing)


def _model_poses(latents: pd.DataFrame, voxel_size_angstrom: float):
    """The model's rotations ``(n, 3, 3)`` and shifts ``(n, 3)`` voxels of every particle, each
    None when the latents table has none (shifts: when matching searched them)."""
    inferred, shifts = None, None
    if set(INFERRED_ANGLES) <= set(latents.columns):
        inferred = relion_angles_to_matrices(latents[list(INFERRED_ANGLES)].to_numpy(np.float64))
    if set(INFERRED_SHIFTS) <= set(latents.columns):
        shifts = latents[list(INFERRED_SHIFTS)].to_numpy(np.float64) / voxel_size_angstrom
    return inferred, shifts


def average_classes(
    latents: pd.DataFrame,
    images: ParticleImages,
    class_names: list[str],
    maps: dict[str, np.ndarray],
    voxel_size_angstrom: float,
    tilt_max_deg: float | None,
    symmetry: dict[str, str | np.ndarray],
    seed: int,
    max_per_class: int = MAX_PER_CLASS,
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Per seen class (3-D): the average from the model's orientations (aligned to the
    reference frame when the truth is known) and from the true ones, and their FSC against the
    class's noise-free map (when ``maps`` has it) and against each other.

    ``latents`` rows line up with ``images``. Returns the averages ``(c, d, d, d)`` (the
    model's, else the true-pose ones, in ``class_names`` order of the seen classes), a table with
    one row per class (resolutions in Å at FSC 0.5 and 0.143) and the FSC curves for figures.
    """
    names = latents["class_name"].astype(str).to_numpy()
    split = latents["split"].astype(str).to_numpy()
    seen = [c for c in class_names if c in set(names[split == "train"])]
    if len(images.shape) == 3:  # 2-D images: no rotation here, the plain means
        means = [
            images.gather(np.flatnonzero((names == c) & (split != "unseen"))).mean(0) for c in seen
        ]
        table = pd.DataFrame({"class_name": seen, "average_from": "2-D images (plain mean)"})
        return np.stack(means), table, {}
    if tilt_max_deg is None:
        log.info("class averages: not missing-wedge weighted (the particles have no wedge)")
    else:
        log.info(
            "class averages: missing-wedge weighted (tilts through +-%g degrees)", tilt_max_deg
        )
    true_angles = latents[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy(np.float64)
    has_truth = np.isfinite(true_angles).all(axis=1)
    inferred, shifts = _model_poses(latents, voxel_size_angstrom)
    rng = np.random.default_rng(seed)
    volumes, rows, curves = [], [], {}
    for c in seen:
        members = np.flatnonzero((names == c) & (split != "unseen"))
        if len(members) > max_per_class:
            members = np.sort(rng.choice(members, size=max_per_class, replace=False))
        truth_known = has_truth[members].all()
        true = relion_angles_to_matrices(true_angles[members]) if truth_known else None
        row = {"class_name": c, "n_particles": len(members)}
        found = {}
        if inferred is not None:
            model = inferred[members]
            train = (split[members] == "train") & truth_known
            if truth_known and train.sum() >= 3:  # into the reference's frame
                q, _ = align_rotations(model[train], true[train], symmetry.get(c))
                model = model @ q
            moved = None if shifts is None else shifts[members]
            found["inferred"] = class_average(images, members, model, tilt_max_deg, moved)
        if truth_known:
            found["true"] = class_average(images, members, true, tilt_max_deg)
        for label, volume in found.items():
            if c in maps:
                frequency, curve = fsc(volume, maps[c])
                curves[(c, label)] = (frequency, curve)
                for threshold in (0.5, 0.143):
                    key = f"{label}_fsc{str(threshold)[2:]}_vs_map_angstrom"
                    row[key] = resolution_angstrom(frequency, curve, threshold, voxel_size_angstrom)
        if {"inferred", "true"} <= set(found):
            frequency, curve = fsc(found["inferred"], found["true"])
            row["inferred_vs_true_fsc05_angstrom"] = resolution_angstrom(
                frequency, curve, 0.5, voxel_size_angstrom
            )
        row["average_from"] = "inferred poses" if "inferred" in found else "true poses"
        if not found:  # neither: the plain mean, unaligned
            found["mean"] = images.gather(members).mean(axis=0)
            row["average_from"] = "no poses (plain mean)"
        volumes.append(found.get("inferred", found.get("true", found.get("mean"))))
        rows.append(row)
    table = pd.DataFrame(rows)
    return (np.stack(volumes) if volumes else np.empty((0,))), table, curves
