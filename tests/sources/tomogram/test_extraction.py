"""Realistic picks: positional jitter and false positives (class background) at extraction."""

import mrcfile
import numpy as np
import pytest
from scipy.spatial import cKDTree

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.particles.picks import BACKGROUND_CLASS
from cryoavae.sources.extract import ExtractionConfig, extract_subtomograms

SHAPE_ZYX = (64, 160, 160)
N = 300


@pytest.fixture(scope="module")
def tomogram(tmp_path_factory):
    folder = tmp_path_factory.mktemp("picks")
    rng = np.random.default_rng(0)
    with mrcfile.new(folder / "tomo.mrc") as mrc:
        mrc.set_data(rng.standard_normal(SHAPE_ZYX).astype(np.float32))
        mrc.voxel_size = 10.0
    xyz = np.stack([rng.uniform(24, s - 24, N) for s in SHAPE_ZYX[::-1]], axis=1)
    names = rng.choice(["1bxn", "1s3x"], N)
    lines = [
        f"{c} {x:.3f} {y:.3f} {z:.3f} 10 20 30" for c, (x, y, z) in zip(names, xyz, strict=True)
    ]
    (folder / "particle_locations.txt").write_text("\n".join(lines) + "\n")
    return folder, xyz


def extract(folder, tmp_path, **settings):
    config = ExtractionConfig(box_size_px=16, edge="pad", **settings)
    extract_subtomograms(
        folder / "tomo.mrc",
        folder / "particle_locations.txt",
        ["1bxn", "1s3x"],
        [],
        config,
        seed=3,
        stack_path=tmp_path / "p.mrcs",
        star_path=tmp_path / "p.star",
        shard=2,
    )
    return P.read_particle_table(tmp_path / "p.star")


def coordinates(table):
    return table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()


def test_no_jitter_cuts_at_the_listed_positions(tomogram, tmp_path):
    folder, xyz = tomogram
    table = extract(folder, tmp_path)
    assert np.allclose(coordinates(table), xyz, atol=1e-3)


def test_jitter_moves_each_pick_by_the_configured_standard_deviation(tomogram, tmp_path):
    folder, xyz = tomogram
    table = extract(folder, tmp_path, jitter_angstrom=20.0)
    error = coordinates(table) - xyz  # voxels of 10 Å
    assert np.allclose(error.std(axis=0), 2.0, rtol=0.15)
    assert np.abs(error.mean(axis=0)).max() < 0.4
    again = extract(folder, tmp_path, jitter_angstrom=20.0)
    assert np.array_equal(coordinates(again), coordinates(table))  # seeded


def test_false_positives_are_background_boxes_away_from_the_particles(tomogram, tmp_path):
    folder, xyz = tomogram
    plain = extract(folder, tmp_path)
    table = extract(folder, tmp_path, false_positive_fraction=0.5)
    junk = table[table[P.CLASS_NAME] == BACKGROUND_CLASS]
    assert len(junk) == N // 2 and len(table) == N + N // 2
    assert (junk[P.CLASS_NUMBER] == 0).all() and (junk[P.SPLIT] == "unseen").all()
    assert junk[list(P.ANGLES)].isna().all().all()
    distance, _ = cKDTree(xyz).query(coordinates(junk))
    assert distance.min() >= 8.0  # half a 16-voxel box
    inside = coordinates(junk)
    assert (inside >= 10).all() and (inside <= np.array(SHAPE_ZYX[::-1]) - 11).all()
    # the true particles keep their splits
    assert table[P.SPLIT].iloc[:N].tolist() == plain[P.SPLIT].tolist()
    assert len(P.open_stack(tmp_path / "p.mrcs", box_ndim=3)) == len(table)


def test_jitter_needs_the_tomograms_voxel_size(tomogram, tmp_path):
    folder, _ = tomogram
    with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
        mrc.set_data(np.zeros((32, 32, 32), np.float32))
    (tmp_path / "particle_locations.txt").write_text("1bxn 16 16 16\n")
    with pytest.raises(InputError, match="no voxel size"):
        extract(tmp_path, tmp_path, jitter_angstrom=5.0)


def test_pick_settings_are_bounded():
    with pytest.raises(InputError, match="extraction.jitter_angstrom = -1.0 is invalid"):
        ExtractionConfig(jitter_angstrom=-1.0)
    with pytest.raises(InputError, match="extraction.false_positive_fraction"):
        ExtractionConfig(false_positive_fraction=11.0)


def test_each_box_records_where_its_listed_particle_sits(tomogram, tmp_path):
    """RELION's origin (the pick minus the listed particle, Å) of every jittered pick, 0 without
    jitter, NaN for a false positive; with the pick's offset from its box's centre it gives
    where the particle sits in its box, which the true-pose class average undoes."""
    folder, xyz = tomogram
    table = extract(folder, tmp_path, jitter_angstrom=20.0, false_positive_fraction=0.2)
    origins = table[list(P.ORIGINS)].to_numpy()
    listed = table[P.CLASS_NAME] != BACKGROUND_CLASS
    np.testing.assert_allclose(
        origins[listed], (coordinates(table)[listed] - xyz) * 10.0, atol=0.01
    )
    assert np.isnan(origins[~listed]).all()
    in_box = (P.pick_from_box_centre(table) - origins) / 10.0  # voxels from the box centre
    np.testing.assert_allclose(in_box[listed], xyz - np.rint(coordinates(table)[listed]), atol=1e-3)
    assert np.abs(in_box[listed]).max() > 3.0  # the picker's error, not the rounding
    plain = extract(folder, tmp_path)
    assert (plain[list(P.ORIGINS)].to_numpy() == 0).all()
