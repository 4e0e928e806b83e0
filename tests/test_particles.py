"""The particle contract: stacks and STAR tables round-trip, validate, and fail clearly."""

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryoavae import particles as P
from cryoavae.errors import InputError


def make_table(n: int, stack: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            P.IMAGE: [P.image_reference(i, stack) for i in range(n)],
            P.CLASS_NUMBER: [1 + i % 2 for i in range(n)],
            "rlnAngleRot": np.linspace(0, 90, n),
            "rlnAngleTilt": np.linspace(0, 45, n),
            "rlnAnglePsi": np.linspace(-30, 30, n),
            P.CLASS_NAME: ["1bxn" if i % 2 == 0 else "3h84" for i in range(n)],
            P.SPLIT: ["train"] * (n - 1) + ["val"],
        }
    )


@pytest.mark.parametrize("shape", [(5, 8, 8), (5, 8, 8, 8)])
def test_stack_round_trip_validates_and_keeps_voxel_size(tmp_path, shape):
    images = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    path = tmp_path / "s.mrcs"
    P.write_stack(path, images, voxel_size_angstrom=12.5)
    assert mrcfile.validate(str(path), print_file=open("/dev/null", "w"))
    assert P.stack_voxel_size(path) == pytest.approx(12.5)
    np.testing.assert_array_equal(np.asarray(P.open_stack(path)), images)


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


def test_bad_split_and_corrupt_files_refused(tmp_path):
    table = make_table(3, "a.mrcs")
    table[P.SPLIT] = ["train", "test", "val"]
    P.starfile.write(table, tmp_path / "bad.star")
    with pytest.raises(InputError, match="cryoavaeSplit"):
        P.read_particle_table(tmp_path / "bad.star")
    (tmp_path / "junk.mrcs").write_bytes(b"not an mrc file at all")
    with pytest.raises(InputError, match="junk.mrcs: not a valid MRC"):
        P.open_stack(tmp_path / "junk.mrcs")
    with pytest.raises(InputError, match="not of the form"):
        P.split_image_reference("a.mrcs")


def test_table_pointing_past_the_stack_is_refused(tmp_path):
    P.write_stack(tmp_path / "a.mrcs", np.zeros((2, 4, 4), np.float32), 1.0)
    table = make_table(3, "a.mrcs")
    reader = P.ParticleImages(table, tmp_path / "a.star")
    with pytest.raises(InputError, match="holds 2"):
        reader.gather([0])


@pytest.mark.parametrize("box", [(8, 8), (6, 8, 8)])
def test_stack_writer_matches_write_stack(tmp_path, box):
    images = np.random.default_rng(1).normal(size=(7, *box)).astype(np.float32)
    P.write_stack(tmp_path / "whole.mrcs", images, 4.0)
    with P.stack_writer(tmp_path / "batched.mrcs", 7, box, 4.0) as out:
        for start in range(0, 7, 3):
            out.write(start, images[start : start + 3])
    assert mrcfile.validate(str(tmp_path / "batched.mrcs"), print_file=open("/dev/null", "w"))
    np.testing.assert_array_equal(np.asarray(P.open_stack(tmp_path / "batched.mrcs")), images)
    with mrcfile.open(tmp_path / "batched.mrcs", header_only=True) as a:
        with mrcfile.open(tmp_path / "whole.mrcs", header_only=True) as b:
            assert a.header.ispg == b.header.ispg and a.header.mz == b.header.mz
            assert float(a.header.rms) == pytest.approx(float(b.header.rms), rel=1e-4)
            assert float(a.header.dmax) == pytest.approx(float(b.header.dmax))


def test_failed_stack_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with P.stack_writer(tmp_path / "s.mrcs", 4, (4, 4), 1.0) as out:
            out.write(0, np.zeros((2, 4, 4), np.float32))
            raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == []


def test_stack_bytes_do_not_depend_on_the_clock(tmp_path, monkeypatch):
    """mrcfile stamps the time into a header label; ours is fixed."""
    import datetime

    import mrcfile.mrcobject as mrcobject

    images = np.ones((2, 4, 4), np.float32)
    P.write_stack(tmp_path / "a.mrcs", images, 1.0)

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2001, 1, 1)

    monkeypatch.setattr(mrcobject, "datetime", Later)
    P.write_stack(tmp_path / "b.mrcs", images, 1.0)
    with P.stack_writer(tmp_path / "c.mrcs", 2, (4, 4), 1.0) as out:
        out.write(0, images)
    assert (tmp_path / "a.mrcs").read_bytes() == (tmp_path / "b.mrcs").read_bytes()
    assert (tmp_path / "a.mrcs").read_bytes() == (tmp_path / "c.mrcs").read_bytes()
