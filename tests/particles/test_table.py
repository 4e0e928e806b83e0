"""The particle table (cryoavae.particles.table): STAR tables round-trip reproducibly, and a
table lacking a column or with an unknown split is refused."""

import numpy as np
import pytest
import starfile
from particle_fixtures import make_table

from cryoavae import particles as P
from cryoavae.core.errors import InputError


def test_table_round_trip_and_gather(tmp_path):
    images = np.arange(6 * 4 * 4 * 4, dtype=np.float32).reshape(6, 4, 4, 4)
    P.write_stack(tmp_path / "a.mrcs", images, 10.0)
    table = make_table(6, "a.mrcs")
    P.write_particle_table(tmp_path / "a.star", table)
    back = P.read_particle_table(tmp_path / "a.star")
    assert list(back[P.CLASS_NAME]) == list(table[P.CLASS_NAME])
    np.testing.assert_allclose(back["rlnAnglePsi"], table["rlnAnglePsi"], atol=1e-5)
    reader = P.ParticleImages(back, tmp_path / "a.star")
    assert reader.shape == (6, 4, 4, 4)
    np.testing.assert_array_equal(reader.gather([4, 1]), images[[4, 1]])


def test_star_bytes_are_reproducible(tmp_path):
    table = make_table(4, "a.mrcs")
    P.write_particle_table(tmp_path / "1.star", table)
    P.write_particle_table(tmp_path / "2.star", table)
    assert (tmp_path / "1.star").read_bytes() == (tmp_path / "2.star").read_bytes()


def test_missing_column_refused(tmp_path):
    table = make_table(3, "a.mrcs").drop(columns=[P.SPLIT])
    with pytest.raises(InputError, match="lacks columns"):
        P.write_particle_table(tmp_path / "x.star", table)
    assert not (tmp_path / "x.star").exists()


def test_bad_split_and_malformed_references_refused(tmp_path):
    table = make_table(3, "a.mrcs")
    table[P.SPLIT] = ["train", "test", "val"]
    starfile.write(table, tmp_path / "bad.star")
    with pytest.raises(InputError, match="cryoavaeSplit"):
        P.read_particle_table(tmp_path / "bad.star")
    with pytest.raises(InputError, match="not of the form"):
        P.split_image_reference("a.mrcs")


def test_class_counts_give_held_out_classes_their_own_number():
    counts = P.class_counts(["a", "b", "c"], {"c"}, per_class=5, per_unseen_class=2)
    assert counts.dtype == np.int64 and counts.tolist() == [5, 5, 2]
