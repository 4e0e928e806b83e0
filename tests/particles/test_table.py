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


def test_splits_hold_out_val_then_test_per_class_and_val_does_not_depend_on_test():
    numbers = np.repeat([1, 2, 3], [40, 40, 10])
    is_unseen = numbers == 3
    only_val = P.assign_splits(numbers, is_unseen, 0.2, np.random.default_rng(4))
    both = P.assign_splits(numbers, is_unseen, 0.2, np.random.default_rng(4), test_fraction=0.25)
    for number in (1, 2):
        members = both[numbers == number]
        assert [(members == s).sum() for s in ("train", "val", "test")] == [22, 8, 10]
    assert set(both[is_unseen]) == {"unseen"}
    np.testing.assert_array_equal(only_val == "val", both == "val")
    with pytest.raises(InputError, match="leave no particle to train on"):
        P.assign_splits(numbers, is_unseen, 0.5, np.random.default_rng(4), test_fraction=0.5)


def test_bad_split_and_malformed_references_refused(tmp_path):
    table = make_table(3, "a.mrcs")
    table[P.SPLIT] = ["train", "holdout", "val"]
    starfile.write(table, tmp_path / "bad.star")
    with pytest.raises(InputError, match="cryoavaeSplit"):
        P.read_particle_table(tmp_path / "bad.star")
    with pytest.raises(InputError, match="not of the form"):
        P.split_image_reference("a.mrcs")


def test_class_counts_give_held_out_classes_their_own_number():
    counts = P.class_counts(["a", "b", "c"], {"c"}, per_class=5, per_unseen_class=2)
    assert counts.dtype == np.int64 and counts.tolist() == [5, 5, 2]
