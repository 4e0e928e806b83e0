"""FSC and the resolution read off it (cryoavae.evaluate.averages), on known curves; class averages
from the model's classes and orientations, which wrong orientations fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryoavae.evaluate.averages import average_classes, fsc, resolution_angstrom


def test_resolution_at_a_threshold():
    frequency = np.arange(1, 9) / 16.0
    curve = np.array([1.0, 0.9, 0.7, 0.4, 0.2, 0.1, 0.0, 0.0])
    # 0.5 is crossed between shells 3 (0.7) and 4 (0.4): at 3 + 2/3 shells of 16
    assert resolution_angstrom(frequency, curve, 0.5, 10.0) == pytest.approx(10.0 / (11 / 48))
    assert resolution_angstrom(frequency, np.ones(8), 0.5, 10.0) == 20.0  # Nyquist


def test_fsc_is_one_for_a_scaled_copy_minus_one_for_a_negated_one_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 16, 16))
    frequency, same = fsc(a, 3.0 * a)
    np.testing.assert_allclose(frequency, np.arange(1, 9) / 16)  # shells 1 .. d // 2
    np.testing.assert_allclose(same, 1.0)
    np.testing.assert_allclose(fsc(a, -a)[1], -1.0)
    unrelated = fsc(a, rng.standard_normal((16, 16, 16)))[1]
    assert np.abs(unrelated[3:]).max() < 0.15  # shells of hundreds of samples each


def _study(
    tmp_path, model_rotations, predicted_b_fraction=0.0, applied=0, shifts_px=None, **options
):
    """Two classes of 30 particles each (asymmetric blob maps, SNR 2, wedge +-60) with latents:
    true angles, the model's angles ``model_rotations`` ``(60, 3, 3)`` (None: the model gives
    none) and mu on two axes, a fraction of class b's particles given class a's mu (the model
    assigns them to a), ``applied`` of class a's test particles labelled ``applied``."""
    from scipy.spatial.transform import Rotation
    from volume_fixtures import blobs, measured

    from cryoavae import particles as P
    from cryoavae.geometry.rotations import matrices_to_relion_angles

    rng = np.random.default_rng(3)
    maps = {"a": blobs(rng), "b": blobs(rng)}
    truth = Rotation.random(60, random_state=4).as_matrix()
    volumes = np.concatenate(
        [
            measured(
                maps[c],
                truth[k * 30 : (k + 1) * 30],
                rng,
                snr=2.0,
                shifts_px=None if shifts_px is None else shifts_px[k * 30 : (k + 1) * 30],
            )
            for k, c in enumerate("ab")
        ]
    )
    P.write_stack(tmp_path / "p.mrcs", volumes, 10.0)
    names = np.repeat(["a", "b"], 30)
    split = np.tile(["train"] * 20 + ["test"] * 10, 2)
    table = P.particle_table("p.mrcs", np.repeat([1, 2], 30), names, split)
    P.write_particle_table(tmp_path / "p.star", table)
    mu = np.where(names[:, None] == "a", [1.0, 0.0], [0.0, 1.0]) + 0.01 * rng.normal(size=(60, 2))
    moved = np.flatnonzero((names == "b") & (split == "test"))[: round(10 * predicted_b_fraction)]
    mu[moved] = [1.0, 0.0]
    latents = pd.DataFrame(
        {"class_name": names, "split": split, "mu_0": mu[:, 0], "mu_1": mu[:, 1]}
    )
    angles = matrices_to_relion_angles(truth)
    latents[["angle_rot", "angle_tilt", "angle_psi"]] = angles
    if model_rotations is not None:
        inferred = matrices_to_relion_angles(model_rotations)
        latents[["inferred_rot", "inferred_tilt", "inferred_psi"]] = inferred
    latents.loc[np.flatnonzero((names == "a") & (split == "test"))[:applied], "split"] = "applied"
    images = P.ParticleImages(table, tmp_path / "p.star")
    return average_classes(latents, images, ["a", "b"], maps, 10.0, 60.0, {}, seed=0, **options)


def test_averages_from_the_models_classes_and_poses_match_the_true_ones_when_right(tmp_path):
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(60, random_state=4).as_matrix()
    _, table, _ = _study(tmp_path, truth)
    row = table.set_index("class_name").loc["a"]
    assert row["average_from"] == "predicted" and row["predicted_purity"] == 1.0
    assert row["predicted_fsc_area_vs_map"] > 0.9 * row["true_fsc_area_vs_map"]
    assert row["predicted_fsc5_vs_map_angstrom"] <= 1.5 * row["true_fsc5_vs_map_angstrom"]


def test_wrong_orientations_fail_the_average_test(tmp_path):
    """Orientations 100 degrees off (about random axes) fail both tests the right ones pass: the
    resolution within 1.5x of the true-pose average's and the FSC area within 0.6 of it."""
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(60, random_state=4).as_matrix()
    axes = Rotation.random(60, random_state=5).as_rotvec()
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    off = Rotation.from_rotvec(axes * np.radians(100)).as_matrix() @ truth
    _, table, _ = _study(tmp_path, off)
    for _, row in table.iterrows():
        assert row["predicted_fsc_area_vs_map"] < 0.6 * row["true_fsc_area_vs_map"]
        assert row["predicted_fsc5_vs_map_angstrom"] > 1.5 * row["true_fsc5_vs_map_angstrom"]


def test_predicted_class_averages_include_what_the_model_puts_there(tmp_path):
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(60, random_state=4).as_matrix()
    _, table, _ = _study(tmp_path, truth, predicted_b_fraction=1.0)
    rows = table.set_index("class_name")
    assert rows.loc["a", "n_predicted"] == 40 and rows.loc["a", "n_particles"] == 30
    assert rows.loc["a", "predicted_purity"] == pytest.approx(0.75)
    assert rows.loc["a", "predicted_fsc_area_vs_map"] < rows.loc["a", "inferred_fsc_area_vs_map"]


def test_averages_from_a_users_own_angles_are_not_called_true(tmp_path):
    """A STAR study's angles are the user's refinement, not a truth: the average made with them
    is labelled given, says where its angles came from and names its columns so."""
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(60, random_state=4).as_matrix()
    _, simulated, _ = _study(tmp_path / "sim", truth)
    (tmp_path / "star").mkdir()
    angles_from = "the STAR file's angles"
    _, table, curves = _study(tmp_path / "star", truth, angles_from=angles_from)
    assert not [c for c in table.columns if "true" in c]
    assert {label for _, label in curves} == {"predicted", "inferred", "given"}
    row, same = table.set_index("class_name").loc["a"], simulated.set_index("class_name").loc["a"]
    assert row["given_fsc_area_vs_map"] == pytest.approx(same["true_fsc_area_vs_map"])
    assert row["predicted_vs_given_fsc_area"] == pytest.approx(same["predicted_vs_true_fsc_area"])


def test_without_the_models_poses_the_average_says_where_its_angles_came_from(tmp_path):
    _, table, _ = _study(tmp_path, None, angles_from="the STAR file's angles")
    assert set(table["average_from"]) == {"given (the STAR file's angles)"}


def test_particles_of_an_applied_set_are_no_class_members(tmp_path):
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(60, random_state=4).as_matrix()
    _, table, _ = _study(tmp_path, truth, applied=10)
    assert table.set_index("class_name")["n_particles"].to_dict() == {"a": 20, "b": 30}


def test_the_true_pose_average_moves_off_centre_particles_back_by_their_known_offsets(tmp_path):
    """Particles off centre by about a voxel and a half: the true-pose average made with their
    known offsets (the simulator's, or a user's refined origins) is sharper than one that ignores
    them, so it is a ceiling the model's averages cannot beat by the truth's blur."""
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(60, random_state=4).as_matrix()
    offsets = np.random.default_rng(6).uniform(-1.5, 1.5, (60, 3))
    (tmp_path / "known").mkdir()
    (tmp_path / "ignored").mkdir()
    _, known, _ = _study(tmp_path / "known", truth, shifts_px=offsets, known_shifts_px=offsets)
    _, ignored, _ = _study(tmp_path / "ignored", truth, shifts_px=offsets)
    for c in "ab":
        sharp = known.set_index("class_name").loc[c, "true_fsc_area_vs_map"]
        blurred = ignored.set_index("class_name").loc[c, "true_fsc_area_vs_map"]
        assert sharp > blurred + 0.1


def test_an_average_is_moved_onto_the_map_before_its_fsc_and_says_how_far(tmp_path):
    """Every particle's centre 1.5 voxels off its map's, the same point of the molecule each
    time (as a reference centred elsewhere than the map leaves them), and the model's
    orientations right but no shifts (a rotation-only search): its average sits 1.5 voxels off
    the map. Moved onto the map before the FSC it scores as the true-pose average does; the
    move is reported."""
    from scipy.spatial.transform import Rotation

    from cryoavae.evaluate.averages import aligned_to, fsc_area

    truth = Rotation.random(60, random_state=4).as_matrix()
    offset = np.array([1.0, -0.8, 0.7])
    common = truth @ offset  # the same offset in the molecule's frame, turned with it
    _, table, _ = _study(tmp_path, truth, shifts_px=common, known_shifts_px=common)
    for _, row in table.iterrows():
        assert row["predicted_shift_to_map_px"] == pytest.approx(np.linalg.norm(offset), abs=0.25)
        assert row["true_shift_to_map_px"] < 0.25
        assert row["predicted_fsc_area_vs_map"] > 0.9 * row["true_fsc_area_vs_map"]
    # the move is what lifts it: the same volume unmoved scores far lower
    from volume_fixtures import blobs

    from cryoavae.geometry.translation import moved

    volume = blobs(np.random.default_rng(3))
    off = moved(volume[None], offset[None])[0]
    back, distance = aligned_to(off, volume)
    assert distance == pytest.approx(np.linalg.norm(offset), abs=0.1)
    assert fsc_area(fsc(back, volume)[1]) > 0.99 > fsc_area(fsc(off, volume)[1]) + 0.2
