"""A point group named for a class is placed in the frame of the class's own map."""

import logging

import numpy as np
from scipy.spatial.transform import Rotation

from cryoavae.geometry.rotations import align_rotations, geodesic_deg
from cryoavae.geometry.volume_rotation import rotate_volumes
from cryoavae.structures.symmetry import fit_point_group, read_symmetry, write_symmetry

D = 24


def _blobs(rng: np.random.Generator, n: int = 6) -> np.ndarray:
    """An asymmetric map: a few Gaussian blobs around the box centre, (D, D, D)."""
    c = np.arange(D) - D // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    volume = np.zeros((D, D, D), np.float32)
    for centre, width in zip(rng.uniform(-7, 7, (n, 3)), rng.uniform(1.0, 1.5, n), strict=True):
        r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
        volume += np.exp(-r2 / (2 * width**2)).astype(np.float32)
    return volume


def _symmetrised(volume: np.ndarray, group: np.ndarray) -> np.ndarray:
    return rotate_volumes(volume, group, source_index=np.zeros(len(group), np.int64)).mean(0)


def _placed_group(name: str, frame: np.ndarray) -> np.ndarray:
    standard = Rotation.create_group(name).as_matrix()
    return np.einsum("ij,kjl,ml->kim", frame, standard, frame)


def test_a_c4_map_in_a_tilted_frame_gets_its_own_axis_back():
    rng = np.random.default_rng(0)
    frame = Rotation.random(random_state=rng).as_matrix()
    truth = _placed_group("C4", frame)
    fit = fit_point_group(_symmetrised(_blobs(rng), truth), "C4", seed=1)
    assert fit.element_cc > 0.98 and fit.element_cc > fit.cc_at_15deg + 0.02
    nearest = geodesic_deg(fit.rotations[:, None], truth[None]).min(axis=1)
    assert len(fit.rotations) == 4 and nearest.max() < 4.0  # every fitted element is a true one
    axis_error = np.degrees(np.arccos(abs(fit.frame[:, 2] @ frame[:, 2])))
    assert axis_error < 3.0


def test_the_placed_group_forgives_symmetric_copies_where_the_standard_one_does_not():
    rng = np.random.default_rng(2)
    frame = Rotation.random(random_state=rng).as_matrix()
    truth = _placed_group("D2", frame)
    fit = fit_point_group(_symmetrised(_blobs(rng), truth), "D2", seed=3)
    poses = Rotation.random(300, random_state=rng).as_matrix()
    seen_as = poses @ truth[rng.integers(0, 4, 300)]  # the same particle, any of 4 copies
    assert np.median(align_rotations(seen_as, poses, "D2")[1]) > 30  # axes assumed along z, x
    assert np.median(align_rotations(seen_as, poses, fit.rotations)[1]) < 3.0


def test_an_asymmetric_map_is_reported_as_not_obeying_the_group(caplog):
    rng = np.random.default_rng(4)
    with caplog.at_level(logging.WARNING):
        fit = fit_point_group(_blobs(rng, n=3), "C3", seed=5, name="lopsided")
    assert fit.element_cc < fit.cc_at_15deg
    assert any("lopsided" in r.message and "C3" in r.message for r in caplog.records)


def test_the_fits_round_trip_through_json(tmp_path):
    rng = np.random.default_rng(6)
    fit = fit_point_group(_blobs(rng), "C2", seed=7)
    write_symmetry(tmp_path / "symmetry.json", {"a": fit})
    groups = read_symmetry(tmp_path / "symmetry.json")
    assert set(groups) == {"a"} and np.allclose(groups["a"], fit.rotations, atol=1e-5)
    assert np.allclose(groups["a"][0], np.eye(3), atol=1e-6)  # identity first
