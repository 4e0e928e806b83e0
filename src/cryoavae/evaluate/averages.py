"""Subtomogram averages from the model's orientations, and how good they are (FSC).

The test a cryo-ET user would apply to a pose: turn every particle of a class back by its
orientation and average (:func:`cryoavae.orientation.averaging.class_average`, missing-wedge
weighted).

Three averages per class, from what a user has to what only a simulation knows: ``predicted``,
the particles the model assigns to the class (nearest training centroid of mu, whatever their
true class or split) turned back by the model's orientations, which is what a user can compute;
``inferred``, the class's true members with the model's orientations; ``true``, the true members
with the true orientations (the ceiling these particles allow). The model's orientations are in
its own canonical frame; when the true orientations are known the frame is aligned with the
reference's first (:func:`~cryoavae.geometry.rotations.align_rotations` on the class's training
particles), so the averages can be compared with the class's map.

Where the particles' angles are not a simulation's truth but a user's own (a STAR file's, a pick
list's), the third average is labelled ``given`` instead of ``true`` and ``average_from`` says
where its angles came from: calling a user's refinement "true" would claim what nobody knows.

At 10 Å per voxel an FSC against the map reaches Nyquist for any roughly right average, so the
threshold resolutions saturate; the FSC's area (its mean over the shells up to Nyquist, 1 for a
perfect match, about 0 for an unrelated volume) keeps ranking averages that both reach Nyquist.

Every FSC is taken after the average is moved onto what it is compared with (the translation of
their cross-correlation's peak, within :data:`ALIGN_REACH_PX`), as two maps are compared in
practice: an average is only defined up to where its reference's centre was put, and a
translation costs nothing in how right its orientations are. The translation is reported
(``*_shift_to_map_px``) so a large one can be seen.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from cryoavae.geometry.rotations import align_rotations, relion_angles_to_matrices
from cryoavae.geometry.translation import moved
from cryoavae.inference.annotate import COLUMNS, class_assignments
from cryoavae.inference.latents import INFERRED_ANGLES, INFERRED_SHIFTS, latent_columns
from cryoavae.orientation.averaging import class_average
from cryoavae.orientation.fourier import correlation_peaks
from cryoavae.particles import ParticleImages

SEEN_SPLITS = ("train", "val", "test")  # a study's particles of seen classes (not unseen/applied)
PREDICTED_CLASS = COLUMNS[0]  # the seen class the annotated STAR file gives each particle
MAX_PER_CLASS = 1000  # a seeded draw of a larger class: the average is then already converged
ALIGN_REACH_PX = 3.0  # an average is moved at most this far (voxels) onto what it is compared with

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


def aligned_to(volume: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """``volume`` ``(d, d, d)`` moved onto ``reference`` by the peak of their cross-correlation
    (within :data:`ALIGN_REACH_PX` voxels, to a fraction of a voxel), and how far it moved."""
    d = volume.shape[-1]
    spectra = np.fft.rfftn(volume) * np.conj(np.fft.rfftn(reference))
    cc = torch.from_numpy(np.fft.irfftn(spectra, s=(d, d, d), axes=(0, 1, 2))[None])
    offset = correlation_peaks(cc, torch.tensor([ALIGN_REACH_PX]))[0].numpy()
    return moved(volume[None], -offset[None])[0], float(np.linalg.norm(offset))


def fsc_area(curve: np.ndarray) -> float:
    """The mean of an FSC curve over its shells: a resolution summary that does not saturate at
    Nyquist as the threshold resolutions do."""
    return float(np.mean(curve))


def _predicted_classes(latents: pd.DataFrame, seen: list[str]) -> np.ndarray | None:
    """Each particle's class as the model assigns it, exactly as ``particles_annotated.star``
    does (:func:`cryoavae.inference.annotate.class_assignments`); None without mu."""
    if not latent_columns(latents, "mu"):
        return None
    assigned = class_assignments(latents, latents, seen)
    return assigned[PREDICTED_CLASS].to_numpy().astype(str)


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
    angles_from: str | None = None,
    known_shifts_px: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Per seen class (3-D): the ``predicted``, ``inferred`` and ``true`` averages (module
    docstring) that the latents allow, each one's FSC against the class's noise-free map (when
    ``maps`` has it; resolutions in Å at FSC 0.5 and 0.143, and the curve's area) and the model's
    averages' FSC against the true-pose one.

    ``latents`` rows line up with ``images``. ``angles_from`` says where the latents' ``angle_*``
    columns came from when they are not a simulation's truth (e.g. "the STAR file's angles"):
    the ``true`` average is then ``given`` (:func:`known_label`). ``known_shifts_px`` ``(n, 3)``
    (x, y, z voxels): where each particle's centre sits by the same source (the simulator's
    offsets, a user's refined origins); that average moves each particle back by it, or it would
    be blurred by every pick error and flatter the model's averages. Returns the averages
    ``(c, d, d, d)`` (the first of predicted, inferred, true that exists, in ``class_names``
    order of the seen classes), a table with one row per class and the FSC curves for figures.
    """
    names = latents["class_name"].astype(str).to_numpy()
    split = latents["split"].astype(str).to_numpy()
    seen = [c for c in class_names if c in set(names[split == "train"])]
    if len(images.shape) == 3:  # 2-D images: no rotation here, the plain means
        means = [
            images.gather(np.flatnonzero((names == c) & np.isin(split, SEEN_SPLITS))).mean(0)
            for c in seen
        ]
        table = pd.DataFrame({"class_name": seen, "average_from": "2-D images (plain mean)"})
        return np.stack(means), table, {}
    if tilt_max_deg is None:
        log.info("class averages: not missing-wedge weighted (the particles have no wedge)")
    else:
        log.info(
            "class averages: missing-wedge weighted (tilts through +-%g degrees)", tilt_max_deg
        )
    if angles_from is not None:
        log.info("class averages: the 'given' average turns the particles by %s", angles_from)
    poses = _Poses(latents, voxel_size_angstrom, symmetry, known_label(angles_from))
    poses.known_shifts = known_shifts_px
    predicted = _predicted_classes(latents, seen) if poses.inferred is not None else None
    rng = np.random.default_rng(seed)

    def draw(members: np.ndarray) -> np.ndarray:
        if len(members) <= max_per_class:
            return members
        return np.sort(rng.choice(members, size=max_per_class, replace=False))

    volumes, rows, curves = [], [], {}
    for c in seen:
        members = draw(np.flatnonzero((names == c) & np.isin(split, SEEN_SPLITS)))
        assigned = None if predicted is None else draw(np.flatnonzero(predicted == c))
        found, row = _class_averages(
            c, members, assigned, poses, names, split, images, tilt_max_deg
        )
        _score(c, found, row, maps, voxel_size_angstrom, curves)
        if not found:  # no poses at all: the plain mean, unaligned
            found["mean"] = images.gather(members).mean(axis=0)
        row["average_from"] = _source(next(iter(found)), angles_from)
        volumes.append(next(iter(found.values())))
        rows.append(row)
    table = pd.DataFrame(rows)
    return (np.stack(volumes) if volumes else np.empty((0,))), table, curves


class _Poses:
    """The latents' poses: true rotations (where known), the model's rotations and shifts, and
    per class the rotation taking the model's frame to the reference's."""

    def __init__(self, latents: pd.DataFrame, voxel_size_angstrom: float, symmetry, known: str):
        true_angles = latents[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy(np.float64)
        self.has_truth = np.isfinite(true_angles).all(axis=1)
        self.true = np.full((len(latents), 3, 3), np.nan)
        self.true[self.has_truth] = relion_angles_to_matrices(true_angles[self.has_truth])
        self.inferred, self.shifts = _model_poses(latents, voxel_size_angstrom)
        self.symmetry = symmetry
        self.known = known  # the label of the average from the table's own angles
        self.known_shifts = None  # and where the table puts each particle's centre (voxels)

    def frame(self, c: str, members: np.ndarray, split: np.ndarray) -> np.ndarray:
        """The rotation aligning the model's frame of class ``c`` with its map's, from the
        class's training particles (the identity when their truth is unknown)."""
        train = members[(split[members] == "train") & self.has_truth[members]]
        if len(train) < 3 or not self.has_truth[members].all():
            return np.eye(3)
        q, _ = align_rotations(self.inferred[train], self.true[train], self.symmetry.get(c))
        return q

    def model_average(self, images, rows, q, tilt_max_deg) -> np.ndarray:
        moved = None if self.shifts is None else self.shifts[rows]
        return class_average(images, rows, self.inferred[rows] @ q, tilt_max_deg, moved)


def _class_averages(c, members, assigned, poses: _Poses, names, split, images, tilt_max_deg):
    """The averages of class ``c`` its poses allow (predicted first), and the table row."""
    row = {"class_name": c, "n_particles": len(members)}
    found = {}
    if poses.inferred is not None:
        q = poses.frame(c, members, split)
        if assigned is not None and len(assigned):
            found["predicted"] = poses.model_average(images, assigned, q, tilt_max_deg)
            row["n_predicted"] = len(assigned)
            row["predicted_purity"] = float(np.mean(names[assigned] == c))
        found["inferred"] = poses.model_average(images, members, q, tilt_max_deg)
    if poses.has_truth[members].all():
        moved = None if poses.known_shifts is None else poses.known_shifts[members]
        found[poses.known] = class_average(
            images, members, poses.true[members], tilt_max_deg, moved
        )
    return found, row


def known_label(angles_from: str | None) -> str:
    """The label of the average made with the particle table's own angles: ``true`` when they
    are a simulation's truth (``angles_from`` None), else ``given``."""
    return "true" if angles_from is None else "given"


def _source(label: str, angles_from: str | None) -> str:
    """``average_from`` of a class: the label, and for ``given`` where its angles came from."""
    return f"{label} ({angles_from})" if label == "given" else label


def _score(c, found, row, maps, voxel_size_angstrom, curves) -> None:
    """FSC of each average against the class's map and the model's against the one from the
    table's own angles (``true`` or ``given``)."""
    known = next((label for label in ("true", "given") if label in found), None)
    for label, volume in found.items():
        if c in maps:
            volume, row[f"{label}_shift_to_map_px"] = aligned_to(volume, maps[c])
            frequency, curve = fsc(volume, maps[c])
            curves[(c, label)] = (frequency, curve)
            for threshold in (0.5, 0.143):
                key = f"{label}_fsc{str(threshold)[2:]}_vs_map_angstrom"
                row[key] = resolution_angstrom(frequency, curve, threshold, voxel_size_angstrom)
            row[f"{label}_fsc_area_vs_map"] = fsc_area(curve)
    for label in ("predicted", "inferred"):
        if known is not None and label in found:
            frequency, curve = fsc(aligned_to(found[label], found[known])[0], found[known])
            row[f"{label}_vs_{known}_fsc05_angstrom"] = resolution_angstrom(
                frequency, curve, 0.5, voxel_size_angstrom
            )
            row[f"{label}_vs_{known}_fsc_area"] = fsc_area(curve)
