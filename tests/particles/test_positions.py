"""Where a picked particle sits in its tomogram, as RELION 5 reads it back."""

import numpy as np
import pandas as pd
import pytest
import starfile

from cryoavae.particles.positions import (
    CENTRED,
    TOMO_NAME,
    TOMOGRAM_VOXEL_SIZE,
    centred_angstrom,
    positions_in,
    tomogram_name,
)


def relion5_pixels(centred, size_xyz, pixel):
    """RELION 5's ParticleSet::getParticleCoordDecenteredPixel: centred / pixel + size / 2.0."""
    return np.asarray(centred) / pixel + np.asarray(size_xyz) / 2.0


def test_centred_coordinates_are_angstrom_from_the_half_size_and_read_back_as_voxels():
    size = (64, 48, 31)  # odd z: RELION's centre is 15.5, not voxel 15
    coords = np.array([[32.0, 24.0, 15.5], [0.0, 0.0, 0.0], [10.25, 40.0, 30.0]])
    centred = centred_angstrom(coords, size, 8.0)
    np.testing.assert_allclose(centred[0], 0.0)
    np.testing.assert_allclose(centred[1], [-256.0, -192.0, -124.0])
    np.testing.assert_allclose(relion5_pixels(centred, size, 8.0), coords)
    integer_centre = (coords - np.array(size) // 2) * 8.0  # a centre voxel: off by 4 Å in z
    assert not np.allclose(centred, integer_centre)


def test_positions_name_the_tomogram_as_its_star_list_does_else_by_its_file(tmp_path):
    coords = np.array([[10.0, 20.0, 5.0], [11.0, 21.0, 6.0]])
    one = pd.DataFrame({TOMO_NAME: ["TS_07", "TS_07"], "rlnCoordinateX": [1.0, 2.0]})
    starfile.write({"particles": one}, tmp_path / "one.star")
    name = tomogram_name(tmp_path / "TS.mrc", tmp_path / "one.star")
    columns = positions_in(name, coords, (12, 40, 30), 5)
    assert list(columns[TOMO_NAME]) == ["TS_07", "TS_07"]
    np.testing.assert_allclose(np.stack([columns[c] for c in CENTRED], 1)[0], [-25, -0, -5])
    assert list(columns[TOMOGRAM_VOXEL_SIZE]) == [5.0, 5.0]
    several = pd.DataFrame({TOMO_NAME: ["TS_07", "TS_08"], "rlnCoordinateX": [1.0, 2.0]})
    starfile.write({"particles": several}, tmp_path / "several.star")
    assert tomogram_name(tmp_path / "TS_08.mrc", tmp_path / "several.star") == "TS_08"
    (tmp_path / "list.txt").write_text("a 1 2 3\n")
    assert tomogram_name(tmp_path / "TS_09.mrc", tmp_path / "list.txt") == "TS_09"


@pytest.mark.parametrize("voxel", [0.0, -1.0])
def test_a_tomogram_without_a_voxel_size_counts_as_the_one_angstrom_extraction_writes(
    tmp_path, voxel
):
    columns = positions_in("t", [[3, 2, 1]], (2, 4, 6), voxel)
    assert columns[TOMOGRAM_VOXEL_SIZE][0] == 1.0
    assert [columns[c][0] for c in CENTRED] == [0.0, 0.0, 0.0]
