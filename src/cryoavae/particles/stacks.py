"""Particle stacks (``.mrcs``): one file of 2-D images or 3-D volumes, the voxel size in its
header, written atomically (whole or batch by batch) and opened read-only."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryoavae.core.atomic import atomic_path
from cryoavae.core.errors import InputError


def write_stack(path: str | os.PathLike, images: np.ndarray, voxel_size_angstrom: float) -> None:
    """Write a stack of 2-D images ``(n, h, w)`` or 3-D volumes ``(n, d, h, w)`` atomically.

    3-D stacks are stored as an MRC volume stack (``ispg`` 401, ``mz`` = box size) so mrcfile
    validates them and readers see ``n`` volumes of ``d`` slices.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim not in (3, 4):
        raise ValueError(f"write_stack: expected (n, h, w) or (n, d, h, w), got {images.shape}")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            if images.ndim == 4:
                n, d, h, w = images.shape
                mrc.set_data(images.reshape(n * d, h, w))
                mrc.header.ispg = 401
                mrc.header.mz = d
            else:
                mrc.set_data(images)
                mrc.set_image_stack()
            mrc.voxel_size = voxel_size_angstrom  # set_data already computed the statistics
            _fixed_label(mrc)


def _fixed_label(mrc) -> None:
    """Replace mrcfile's time-stamped label, so that a seeded run is byte-for-byte reproducible."""
    mrc.header.label[0] = b"cryoavae particle stack"
    mrc.header.nlabl = 1


class StackWriter:
    """A stack being written batch by batch (see :func:`stack_writer`).

    Each batch goes to the file with ``os.pwrite`` at its offset, so only the batch in hand is in
    the process's memory, however large the shard; header statistics are accumulated batch by
    batch instead of re-reading the file.
    """

    def __init__(self, fd: int, data_offset: int, item_bytes: int, box_shape: tuple[int, ...]):
        self._fd, self._offset, self._item_bytes = fd, data_offset, item_bytes
        self._box_shape = box_shape
        self._count = 0
        self._sum = self._sum_sq = 0.0
        self._min, self._max = np.inf, -np.inf

    def write(self, start: int, batch: np.ndarray) -> None:
        """Put ``batch`` ``(b, *box)`` at rows ``start .. start + b``."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.shape[1:] != self._box_shape:
            raise ValueError(f"batch of shape {batch.shape} for boxes of {self._box_shape}")
        os.pwrite(self._fd, batch.tobytes(), self._offset + start * self._item_bytes)
        self._count += batch.size
        self._sum += float(batch.sum(dtype=np.float64))
        self._sum_sq += float(np.square(batch, dtype=np.float64).sum())
        if batch.size:
            self._min = min(self._min, float(batch.min()))
            self._max = max(self._max, float(batch.max()))

    def statistics(self) -> tuple[float, float, float, float]:
        """(min, max, mean, rms about the mean) of everything written."""
        mean = self._sum / max(self._count, 1)
        variance = max(self._sum_sq / max(self._count, 1) - mean * mean, 0.0)
        return self._min, self._max, mean, variance**0.5


@contextlib.contextmanager
def stack_writer(
    path: str | os.PathLike, n: int, box_shape: tuple[int, ...], voxel_size_angstrom: float
) -> Iterator[StackWriter]:
    """Create a stack of ``n`` float32 images or volumes of ``box_shape``, filled batch by batch.

    Written to a temporary file beside ``path`` and renamed only if the block succeeds, like
    :func:`write_stack`, whose file layout it matches.
    """
    box_shape = tuple(int(b) for b in box_shape)
    if len(box_shape) not in (2, 3):
        raise ValueError(f"stack_writer: box_shape must be 2-D or 3-D, got {box_shape}")
    sections = n * box_shape[0] if len(box_shape) == 3 else n
    with atomic_path(path) as tmp:
        # The header and the file's full size first (mrcfile lays out the file; data is sparse).
        with mrcfile.new_mmap(
            tmp, shape=(sections, *box_shape[-2:]), mrc_mode=2, overwrite=True
        ) as mrc:
            data_offset = mrc.header.nbytes + mrc.extended_header.nbytes
        with open(tmp, "r+b") as handle:
            writer = StackWriter(
                handle.fileno(), data_offset, 4 * int(np.prod(box_shape)), box_shape
            )
            yield writer
        with mrcfile.mmap(tmp, mode="r+") as mrc:  # header_only would truncate the data
            if len(box_shape) == 3:
                mrc.header.ispg = 401
                mrc.header.mz = box_shape[0]
            else:
                mrc.header.ispg = 0
                mrc.header.mz = 1
            mrc.voxel_size = voxel_size_angstrom
            _fixed_label(mrc)
            dmin, dmax, dmean, rms = writer.statistics()
            mrc.header.dmin, mrc.header.dmax = dmin, dmax
            mrc.header.dmean, mrc.header.rms = dmean, rms


def _open_mrc_stack(path: Path, box_ndim: int | None, whole: bool = False):
    """(open mrcfile mmap object, data viewed as ``(n, *box)``); see :func:`open_stack`.

    ``whole``: the file is one particle (RELION's ``rlnImageName`` without ``index@``), a 2-D
    image or a 3-D volume whatever its space group says.
    """
    if not path.exists():
        raise InputError(f"{path}: particle stack not found")
    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=False)
    except ValueError as exc:
        raise InputError(f"{path}: not a valid MRC stack ({exc})") from exc
    data = mrc.data
    if data is None:
        mrc.close()
        raise InputError(f"{path}: MRC file holds no data")
    if whole:
        single_volume = data.ndim == 3 and not (
            int(mrc.header.ispg) == 401 and 0 < int(mrc.header.mz) < data.shape[0]
        )
        if data.ndim == 2 or single_volume or (data.ndim == 4 and data.shape[0] == 1):
            data = data.reshape(1, *data.shape[-(data.ndim if data.ndim < 4 else 3) :])
        else:
            mrc.close()
            raise InputError(
                f"{path}: holds {data.shape} (several particles); name one as <index>@{path.name}"
            )
        if box_ndim is not None and data.ndim - 1 != box_ndim:
            mrc.close()
            raise InputError(f"{path}: holds a {data.ndim - 1}-D particle, expected {box_ndim}-D")
        return mrc, data
    if box_ndim is None:
        box_ndim = 3 if int(mrc.header.ispg) == 401 else 2
    if box_ndim == 3:
        d = int(mrc.header.mz) or data.shape[-1]
        if data.ndim == 3 and data.shape[0] % d == 0:
            data = data.reshape(data.shape[0] // d, d, *data.shape[1:])
        elif data.ndim != 4:
            mrc.close()
            raise InputError(
                f"{path}: expected a stack of volumes, header gives shape {data.shape}"
            )
    elif data.ndim == 2:
        data = data[None]
    return mrc, data


def open_stack(path: str | os.PathLike, box_ndim: int | None = None) -> np.ndarray:
    """A stack's images ``(n, h, w)`` or volumes ``(n, d, h, w)``, memory-mapped read-only.

    ``box_ndim`` (2 or 3) says whether the stack holds images or volumes; ``None`` reads it from
    the header (space group 401 marks a stack of volumes, as :func:`write_stack` writes them).
    """
    return _open_mrc_stack(Path(path), box_ndim)[1]


@dataclass(frozen=True)
class StackLayout:
    """Where a stack's images lie in its file, so that they can be read with positioned reads."""

    path: Path
    data_offset: int  # bytes before the first image (header + extended header)
    dtype: np.dtype  # as stored, e.g. little-endian float32
    item_shape: tuple[int, ...]  # one image or volume
    n_items: int
    item_bytes: int  # bytes of one image as stored


def stack_layout(
    path: str | os.PathLike, box_ndim: int | None = None, whole: bool = False
) -> StackLayout:
    """Validate a stack's header (as :func:`open_stack` does) and return its layout; ``whole``:
    the file is one particle (see :func:`_open_mrc_stack`)."""
    path = Path(path)
    mrc, data = _open_mrc_stack(path, box_ndim, whole)
    with mrc:
        layout = StackLayout(
            path=path,
            data_offset=int(mrc.header.nbytes + mrc.extended_header.nbytes),
            dtype=data.dtype,
            item_shape=tuple(int(n) for n in data.shape[1:]),
            n_items=int(data.shape[0]),
            item_bytes=int(data[0].nbytes) if len(data) else 0,
        )
    del data
    return layout


def stack_voxel_size(path: str | os.PathLike) -> float:
    """Voxel size (Å) from a stack's header."""
    with mrcfile.open(path, mode="r", header_only=True) as mrc:
        return float(mrc.voxel_size.x)
