"""Subtomogram averages from orientations, FSC and resolution, and the aligned orientation
error: known answers built in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from cryoavae import particles as P
from cryoavae.evaluate.averages import class_average, fsc, resolution_angstrom
from cryoavae.evaluate.orientation import aligned_orientation_metrics
from cryoavae.orientations import align_rotations, matrices_to_relion_angles
from cryoavae.simulate.rotation import rotate_volumes

D = 24


def blob_map() -> np.ndarray:
    """An asymmetric, smooth map: three Gaussian blobs at different offsets."""
    z, y, x = np.indices((D, D, D)) - D // 2
    out = np.zeros((D, D, D))
    for (cx, cy, cz), s, w in [
        ((4, 0, 0), 2.0, 1.0),
        ((-2, 3, 1), 1.6, 0.7),
        ((0, -2, -4), 2.2, 0.5),
    ]:
        out += w * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s**2))
    return out.astype(np.float32)


def stack_of(volumes: np.ndarray, tmp_path) -> P.ParticleImages:
    P.write_stack(tmp_path / "p.mrcs", volumes, 10.0)
    n = len(volumes)
    table = P.particle_table("p.mrcs", np.ones(n, int), ["a"] * n, np.array(["train"] * n))
    P.write_particle_table(tmp_path / "p.star", table)
    return P.ParticleImages(table, tmp_path / "p.star")


def test_copies_turned_back_with_their_true_poses_reproduce_the_map(tmp_path):
    reference = blob_map()
    poses = Rotation.random(40, rng=np.random.default_rng(0)).as_matrix()
    images = stack_of(rotate_volumes(reference, poses, source_index=np.zeros(40, int)), tmp_path)
    average = class_average(images, np.arange(40), poses)
    frequency, curve = fsc(average, reference)
    # to half Nyquist; beyond it the smooth map has next to no power (1e-6 of it), and what is
    # left there is the trilinear interpolation's error, turned back and forth
    assert curve[frequency <= 0.25].min() >= 0.99, curve.round(3)
    wrong = Rotation.random(40, rng=np.random.default_rng(1)).as_matrix()
    assert fsc(class_average(images, np.arange(40), wrong), reference)[1][3:].max() < 0.9


def test_missing_wedge_weighting_restores_what_the_wedge_took(tmp_path):
    from cryoavae.wedge import missing_wedge_mask

    reference = blob_map()
    poses = Rotation.random(60, rng=np.random.default_rng(2)).as_matrix()
    turned = rotate_volumes(reference, poses, source_index=np.zeros(60, int))
    keep = missing_wedge_mask(D, 45.0, rfft=False)
    wedged = np.fft.ifftn(np.fft.fftn(turned, axes=(1, 2, 3)) * keep, axes=(1, 2, 3)).real
    images = stack_of(wedged.astype(np.float32), tmp_path)
    plain = fsc(class_average(images, np.arange(60), poses), reference)[1]
    weighted = fsc(class_average(images, np.arange(60), poses, tilt_max_deg=45.0), reference)[1]
    assert weighted.mean() > plain.mean() and weighted[: D // 4].min() > 0.95


def test_resolution_at_a_threshold():
    frequency = np.arange(1, 9) / 16.0
    curve = np.array([1.0, 0.9, 0.7, 0.4, 0.2, 0.1, 0.0, 0.0])
    # 0.5 is crossed between shells 3 (0.7) and 4 (0.4): at 3 + 2/3 shells of 16
    assert resolution_angstrom(frequency, curve, 0.5, 10.0) == pytest.approx(10.0 / (11 / 48))
    assert resolution_angstrom(frequency, np.ones(8), 0.5, 10.0) == 20.0  # Nyquist


def test_the_aligned_error_is_zero_for_one_fixed_rotation_and_132_for_random_guesses():
    rng = np.random.default_rng(3)
    true = Rotation.random(3000, rng=rng).as_matrix()
    offset = Rotation.random(rng=rng).as_matrix()
    _, errors = align_rotations(true @ offset.T, true)
    assert errors.max() < 1e-4
    _, random = align_rotations(Rotation.random(3000, rng=rng).as_matrix(), true)
    assert 128 < np.median(random) < 136  # 132.35 for no information at all


def test_a_symmetric_copy_is_not_counted_as_an_error():
    rng = np.random.default_rng(4)
    true = Rotation.random(500, rng=rng).as_matrix()
    group = Rotation.create_group("D2").as_matrix()
    seen_as = true @ group[rng.integers(0, 4, 500)]  # each particle seen as any of 4 copies
    assert np.median(align_rotations(seen_as, true)[1]) > 30
    assert align_rotations(seen_as, true, "D2")[1].max() < 1e-4


def test_the_metric_from_a_latents_table():
    rng = np.random.default_rng(5)
    n = 200
    true = Rotation.random(n, rng=rng).as_matrix()
    inferred = true @ Rotation.random(rng=rng).as_matrix()
    truth, guess = matrices_to_relion_angles(true), matrices_to_relion_angles(inferred)
    latents = pd.DataFrame(
        {
            "class_name": "a",
            "split": np.where(np.arange(n) % 4 == 0, "val", "train"),
            **dict(zip(["angle_rot", "angle_tilt", "angle_psi"], truth.T, strict=True)),
            **dict(zip(["inferred_rot", "inferred_tilt", "inferred_psi"], guess.T, strict=True)),
        }
    )
    names, split = latents["class_name"].to_numpy(), latents["split"].to_numpy()
    metrics, rotations = aligned_orientation_metrics(
        latents, names, split == "train", split == "val", ["a"], {}
    )
    assert metrics["pose_geodesic_median_deg"] < 1e-3 and set(rotations) == {"a"}
