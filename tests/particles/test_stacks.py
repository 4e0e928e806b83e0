"""Image stacks (cryoavae.particles.stacks): MRC stacks round-trip with their voxel size, the
batched writer matches the whole one and leaves nothing behind on a crash, and bytes are
reproducible."""

import mrcfile
import numpy as np
import pytest

from cryoavae import particles as P
from cryoavae.core.errors import InputError


@pytest.mark.parametrize("shape", [(5, 8, 8), (5, 8, 8, 8)])
def test_stack_round_trip_validates_and_keeps_voxel_size(tmp_path, shape):
    images = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    path = tmp_path / "s.mrcs"
    P.write_stack(path, images, voxel_size_angstrom=12.5)
    assert mrcfile.validate(str(path), print_file=open("/dev/null", "w"))
    assert P.stack_voxel_size(path) == pytest.approx(12.5)
    np.testing.assert_array_equal(np.asarray(P.open_stack(path)), images)


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


def test_a_corrupt_stack_is_refused(tmp_path):
    (tmp_path / "junk.mrcs").write_bytes(b"not an mrc file at all")
    with pytest.raises(InputError, match="junk.mrcs: not a valid MRC"):
        P.open_stack(tmp_path / "junk.mrcs")
