"""Pick lists (cryoavae.particles.picks): SHREC'21, STAR and CSV locations read with their
conventions, malformed lists refused, and realistic picks (jitter, false positives)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.particles.picks import (
    BACKGROUND_CLASS,
    ParticleList,
    add_false_positives,
    jitter_positions,
    read_particle_list,
    shrec_angles_to_relion,
)

CLASSES = ["1bxn", "3qm1", "1s3x", "5mrc"]


def test_shrec_angles_convert_to_the_same_matrix():
    a = np.array([[30.0, 50.0, 70.0], [200.0, 10.0, 300.0], [40.0, 0.0, 30.0]])  # last: gimbal lock
    zyz = shrec_angles_to_relion(a)

    def rz(t):
        c, s = np.cos(np.radians(t)), np.sin(np.radians(t))
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    def rx(t):
        c, s = np.cos(np.radians(t)), np.sin(np.radians(t))
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(t):
        c, s = np.cos(np.radians(t)), np.sin(np.radians(t))
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    for (a0, a1, a2), (rot, tilt, psi) in zip(a, zyz, strict=True):
        expected = rz(a2) @ rx(a1) @ rz(a0)
        assert np.allclose(rz(rot) @ ry(tilt) @ rz(psi), expected, atol=1e-9)
    assert np.isnan(shrec_angles_to_relion([[np.nan] * 3])).all()


def test_star_and_csv_lists(tmp_path):
    star = tmp_path / "picks.star"
    starfile.write(
        pd.DataFrame(
            {
                "rlnCoordinateX": [20.0, 50.0],
                "rlnCoordinateY": [14.0, 30.0],
                "rlnCoordinateZ": [12.0, 25.0],
                "rlnAngleRot": [1.0, 2.0],
                "rlnAngleTilt": [3.0, 4.0],
                "rlnAnglePsi": [5.0, 6.0],
                "rlnClassNumber": [2, 9],
            }
        ),
        star,
    )
    plist = read_particle_list(star, CLASSES)
    assert list(plist.names) == ["3qm1", "9"]  # 9 is outside the class list: kept as a name
    assert np.array_equal(plist.coords_xyz[1], [50.0, 30.0, 25.0])
    assert np.array_equal(plist.angles_deg[0], [1.0, 3.0, 5.0])

    csv = tmp_path / "picks.csv"
    csv.write_text("class,x,y,z\n1bxn,20,14,12\n5mrc,58,20,28\n")
    plist = read_particle_list(csv, CLASSES)
    assert list(plist.names) == ["1bxn", "5mrc"]
    assert np.isnan(plist.angles_deg).all()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.txt", "1bxn 1 2 3 4\n", "line 1 has 5 fields"),
        ("bad.txt", "1bxn 1 two 3 0 0 0\n", "non-numeric"),
        ("bad.txt", "\n# nothing\n", "no particles"),
        ("bad.csv", "class,x,y\n1bxn,1,2\n", "lacks columns ['z']"),
        ("bad.csv", "class,x,y,z\n1bxn,1,2,abc\n", "row 1 has z = 'abc'"),
        ("bad.star", "data_\nloop_\n_rlnAnglePsi #1\n1.0\n", "particle tables with coordinates"),
        ("bad.lst", "1bxn 1 2 3\n", "suffix '.lst'"),
    ],
)
def test_malformed_lists_are_refused(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match="bad") as err:
        read_particle_list(path, CLASSES)
    assert message in str(err.value)


def test_rotation_helper_agrees_with_scipy_zyz():
    # the documented relation: scipy intrinsic "ZYZ" of (rot, tilt, psi) is the recorded rotation
    zyz = shrec_angles_to_relion([[10.0, 20.0, 30.0]])[0]
    r1 = Rotation.from_euler("ZYZ", zyz, degrees=True)
    r2 = Rotation.from_euler("zxz", [10.0, 20.0, 30.0], degrees=True)
    assert np.allclose(r1.as_matrix(), r2.as_matrix())


def test_a_shrec_rotation_is_read_as_the_transpose_of_relions_matrix():
    """The module's convention, beside geometry.rotations': the static-axis ZXZ matrix of a
    SHREC'21 line is A^T, A being RELION's matrix of the angles read (the reference turned onto
    the particle), so a convention flipped on either side fails here."""
    a = np.array([[10.0, 20.0, 30.0], [200.0, 75.0, 310.0]])
    zxz = Rotation.from_euler("zxz", a, degrees=True).as_matrix()
    relion = relion_angles_to_matrices(shrec_angles_to_relion(a))
    np.testing.assert_allclose(relion.transpose(0, 2, 1), zxz, atol=1e-9)
    assert not np.allclose(relion, zxz, atol=1e-3)


def test_shrec_list_with_and_without_angles_and_comments(tmp_path):
    path = tmp_path / "particle_locations.txt"
    path.write_text("# header\n1bxn 20 14 12 10 20 30\n\nvesicle 5.5 6 7  # no angles\n")
    plist = read_particle_list(path, CLASSES)
    assert list(plist.names) == ["1bxn", "vesicle"]
    np.testing.assert_array_equal(plist.coords_xyz, [[20.0, 14.0, 12.0], [5.5, 6.0, 7.0]])
    np.testing.assert_allclose(plist.angles_deg[0], shrec_angles_to_relion([[10, 20, 30]])[0])
    assert np.isnan(plist.angles_deg[1]).all()


def test_star_list_of_several_tomograms_keeps_the_named_ones_rows(tmp_path):
    star = tmp_path / "picks.star"
    table = pd.DataFrame(
        {
            "rlnTomoName": ["tomo_a", "tomo_b", "tomo_a"],
            "rlnCoordinateX": [1.0, 2.0, 3.0],
            "rlnCoordinateY": [4.0, 5.0, 6.0],
            "rlnCoordinateZ": [7.0, 8.0, 9.0],
            "cryoavaeClassName": ["5mrc", "1bxn", "mine"],
        }
    )
    starfile.write(table, star)
    plist = read_particle_list(star, CLASSES, tomogram_name="tomo_a")
    assert list(plist.names) == ["5mrc", "mine"]  # the class name column wins over numbers
    np.testing.assert_array_equal(plist.coords_xyz[:, 0], [1.0, 3.0])
    with pytest.raises(InputError, match="none equal to the tomogram's name 'tomo_c'"):
        read_particle_list(star, CLASSES, tomogram_name="tomo_c")


def test_jitter_moves_every_coordinate_by_a_seeded_normal_error():
    rng = np.random.default_rng(0)
    plist = ParticleList(
        np.array(["a"] * 4000, dtype=object), rng.uniform(0, 100, (4000, 3)), np.zeros((4000, 3))
    )
    assert jitter_positions(plist, 0.0, np.random.default_rng(1)) is plist
    moved = jitter_positions(plist, 2.0, np.random.default_rng(1))
    error = moved.coords_xyz - plist.coords_xyz
    np.testing.assert_allclose(error.std(axis=0), 2.0, rtol=0.05)  # on each axis
    assert np.abs(error.mean(axis=0)).max() < 0.1
    again = jitter_positions(plist, 2.0, np.random.default_rng(1))
    np.testing.assert_array_equal(again.coords_xyz, moved.coords_xyz)
    assert moved.names is plist.names and moved.angles_deg is plist.angles_deg


def test_false_positives_keep_their_distance_from_the_particles_and_the_faces():
    rng = np.random.default_rng(2)
    shape_xyz = (80, 60, 40)
    coords = rng.uniform(10, 30, (50, 3))
    plist = ParticleList(np.array(["a"] * 50, dtype=object), coords, np.ones((50, 3)))
    out = add_false_positives(plist, 30, shape_xyz, 5.0, 6.0, rng)
    assert len(out) == 80
    np.testing.assert_array_equal(out.coords_xyz[:50], coords)  # the true picks first, as they were
    assert list(out.names[50:]) == [BACKGROUND_CLASS] * 30
    assert np.isnan(out.angles_deg[50:]).all() and (out.angles_deg[:50] == 1).all()
    junk = out.coords_xyz[50:]
    assert cKDTree(coords).query(junk)[0].min() >= 6.0
    assert (junk >= 5.0).all() and (junk <= np.array(shape_xyz) - 6.0).all()
    too_small = add_false_positives(plist, 5, (8, 8, 8), 5.0, 6.0, rng)
    assert too_small is plist  # no room inside the margins: nothing added
