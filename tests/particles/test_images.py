"""Reading particle images (cryoavae.particles.images): gathering any rows of several stacks with
positioned reads, other stored dtypes, short reads, and tables that do not fit their stacks."""

import os

import mrcfile
import numpy as np
import pandas as pd
import pytest
from particle_fixtures import make_table

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.particles import images as particle_images


def test_table_pointing_past_the_stack_is_refused(tmp_path):
    P.write_stack(tmp_path / "a.mrcs", np.zeros((2, 4, 4), np.float32), 1.0)
    table = make_table(3, "a.mrcs")
    reader = P.ParticleImages(table, tmp_path / "a.star")
    with pytest.raises(InputError, match="holds 2"):
        reader.gather([0])


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


def _blob(d: int, centre_xyz) -> np.ndarray:
    """An anisotropic Gaussian (so a wrong axis shows) centred at ``centre_xyz`` voxels from the
    box centre."""
    z, y, x = np.mgrid[:d, :d, :d] - d // 2
    cx, cy, cz = centre_xyz
    return np.exp(-((x - cx) ** 2 / 12 + (y - cy) ** 2 / 8 + (z - cz) ** 2 / 5)).astype(np.float32)


@pytest.mark.parametrize("chunk", [64, 2])
def test_a_table_with_found_centres_reads_each_particle_moved_onto_its_centre(
    tmp_path, monkeypatch, chunk
):
    """The RECENTRE columns (Å) say where each particle sits; it is read moved there, to a small
    fraction of its peak, every axis on its own; rows without them read as stored."""
    d, voxel = 24, 10.0
    offsets = np.array([[2.0, -1.0, 0.5], [-1.5, 0.0, 2.5], [0.0, 0.0, 0.0]])  # voxels, x y z
    stored = np.stack([_blob(d, o) for o in offsets])
    P.write_stack(tmp_path / "a.mrcs", stored, voxel)
    table = make_table(3, "a.mrcs")
    plain = P.ParticleImages(table, tmp_path / "a.star")
    np.testing.assert_array_equal(plain.gather([0, 1, 2]), stored)
    table = table.assign(**{c: offsets[:, a] * voxel for a, c in enumerate(P.RECENTRE)})
    monkeypatch.setattr(particle_images, "RECENTRE_CHUNK", chunk)
    reader = P.ParticleImages(table, tmp_path / "a.star")
    centred = _blob(d, (0, 0, 0))
    np.testing.assert_allclose(reader.gather([2, 0, 1]), np.stack([centred] * 3), atol=2e-3)
    for row in (1, 0, 2):  # in any order, and through a subset
        np.testing.assert_allclose(reader.gather([row])[0], centred, atol=2e-3)
    np.testing.assert_allclose(reader.subset([1]).gather([0])[0], centred, atol=2e-3)
    wrong = table.assign(**{P.RECENTRE[0]: -table[P.RECENTRE[0]]})  # x the other way
    assert np.abs(P.ParticleImages(wrong, tmp_path / "a.star")[0] - centred).max() > 0.3


def test_found_centres_must_be_complete_numbers(tmp_path):
    P.write_stack(tmp_path / "a.mrcs", np.zeros((2, 4, 4, 4), np.float32), 10.0)
    table = make_table(2, "a.mrcs")
    with pytest.raises(InputError, match="not all of"):
        P.ParticleImages(table.assign(**{P.RECENTRE[0]: 1.0}), tmp_path / "a.star")
    blank = table.assign(**{c: [0.0, np.nan] for c in P.RECENTRE})
    with pytest.raises(InputError, match="row 2 has no number"):
        P.ParticleImages(blank, tmp_path / "a.star")
