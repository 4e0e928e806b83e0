"""The particle contract: stacks and STAR tables round-trip, validate, and fail clearly."""

import os

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryoavae import particles as P
from cryoavae.errors import InputError
from cryoavae.particles import images as particle_images


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
    starfile.write(table, tmp_path / "bad.star")
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


def test_gather_reads_any_rows_of_several_stacks_in_the_asked_order(tmp_path):
    """Runs of consecutive images are read together; the result follows ``rows``, whatever the
    order, across stacks, and fills ``out`` in place."""
    first = np.random.default_rng(1).normal(size=(7, 3, 5)).astype(np.float32)
    second = np.random.default_rng(2).normal(size=(4, 3, 5)).astype(np.float32)
    P.write_stack(tmp_path / "a.mrcs", first, 10.0)
    P.write_stack(tmp_path / "b.mrcs", second, 10.0)
    table = pd.concat([make_table(7, "a.mrcs"), make_table(4, "b.mrcs")], ignore_index=True)
    reader = P.ParticleImages(table, tmp_path / "t.star", box_ndim=2)
    both = np.concatenate([first, second])
    rows = [8, 2, 3, 4, 0, 10, 9, 6, 5, 2]  # runs, gaps, a repeat, descending runs
    np.testing.assert_array_equal(reader.gather(rows), both[rows])
    out = np.zeros((len(rows), 3, 5), dtype=np.float32)
    assert reader.gather(rows, out=out) is out
    np.testing.assert_array_equal(out, both[rows])
    with pytest.raises(ValueError, match="out must be"):
        reader.gather(rows, out=np.zeros((2, 3, 5), dtype=np.float32))


def test_gather_holds_no_memory_map_of_the_stack(tmp_path):
    """Batches are copied with positioned reads: no page of the stack stays mapped, so a
    training process does not grow by the size of its data set."""
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs Linux /proc")
    P.write_stack(tmp_path / "mapped.mrcs", np.ones((6, 4, 4, 4), dtype=np.float32), 10.0)
    reader = P.ParticleImages(make_table(6, "mapped.mrcs"), tmp_path / "t.star", box_ndim=3)
    assert reader.gather([5, 0]).sum() == 2 * 64
    assert "mapped.mrcs" not in open("/proc/self/maps").read()


def test_gather_converts_other_stored_dtypes(tmp_path):
    """A float16 stack (MRC mode 12), as other software writes, comes back as float32."""
    images = np.random.default_rng(3).normal(size=(5, 4, 6)).astype(np.float16)
    with mrcfile.new(tmp_path / "half.mrcs") as mrc:
        mrc.set_data(images)
        mrc.set_image_stack()
    reader = P.ParticleImages(make_table(5, "half.mrcs"), tmp_path / "t.star", box_ndim=2)
    got = reader.gather([4, 0, 1])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, images[[4, 0, 1]].astype(np.float32))


def test_gather_of_more_consecutive_images_than_one_system_call_takes(tmp_path):
    n = particle_images.IOV_MAX + 300
    images = np.arange(n * 2 * 2, dtype=np.float32).reshape(n, 2, 2)
    P.write_stack(tmp_path / "long.mrcs", images, 10.0)
    reader = P.ParticleImages(make_table(n, "long.mrcs"), tmp_path / "t.star", box_ndim=2)
    np.testing.assert_array_equal(reader.gather(np.arange(n)), images)


def test_reads_that_stop_early_are_continued(tmp_path, monkeypatch):
    """A network file system may return fewer bytes than asked: the read carries on."""
    images = np.arange(40 * 3 * 3, dtype=np.float32).reshape(40, 3, 3)
    P.write_stack(tmp_path / "slow.mrcs", images, 10.0)
    reader = P.ParticleImages(make_table(40, "slow.mrcs"), tmp_path / "t.star", box_ndim=2)
    real, calls = os.preadv, []

    def at_most_7_bytes(fd, buffers, offset):
        calls.append(offset)
        return real(fd, [memoryview(buffers[0])[:7]], offset)

    monkeypatch.setattr(particle_images.os, "preadv", at_most_7_bytes)
    np.testing.assert_array_equal(reader.gather(np.arange(40)), images)
    assert len(calls) == 40 * 6  # 7, 7, 7, 7, 7, 1 bytes of each 36-byte image


def test_image_index_zero_is_refused(tmp_path):
    P.write_stack(tmp_path / "a.mrcs", np.zeros((2, 4, 4), dtype=np.float32), 10.0)
    table = make_table(2, "a.mrcs")
    table.loc[0, P.IMAGE] = "000000@a.mrcs"
    with pytest.raises(InputError, match="'000000@a.mrcs' is not of the form"):
        P.ParticleImages(table, tmp_path / "t.star", box_ndim=2)


def test_short_read_reports_the_bytes_read(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    buffers = [np.zeros(4, dtype=np.float32), np.zeros(4, dtype=np.float32)]
    fd = os.open(path, os.O_RDONLY)
    try:
        assert particle_images._preadv(fd, buffers, 0) == 24
    finally:
        os.close(fd)
    np.testing.assert_array_equal(buffers[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(buffers[1][:2], [4, 5])


def test_stacks_with_different_boxes_are_refused(tmp_path):
    P.write_stack(tmp_path / "a.mrcs", np.zeros((2, 4, 4), dtype=np.float32), 10.0)
    P.write_stack(tmp_path / "b.mrcs", np.ones((2, 4, 4), dtype=np.float32), 10.0)
    P.write_stack(tmp_path / "c.mrcs", np.zeros((2, 6, 6), dtype=np.float32), 10.0)
    tables = [make_table(2, name) for name in ("a.mrcs", "b.mrcs", "c.mrcs")]
    reader = P.ParticleImages(pd.concat(tables, ignore_index=True), tmp_path / "t.star", 2)
    assert reader.gather([3]).sum() == 16  # a later stack first: compared with the first one
    with pytest.raises(InputError, match=r"c.mrcs: holds boxes of shape \(6, 6\), but a.mrcs"):
        reader.gather([5])
