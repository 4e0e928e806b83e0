"""Particle tables (STAR) and image stacks (.mrcs): the contract between the pipeline's stages.

Every source of particles (simulation, extraction from tomograms, the 2-D character set, the
original Affinity-VAE folder layout) writes the same thing: one ``.mrcs`` stack per shard with the
voxel size in its header and a STAR table whose rows point into it. Everything downstream reads
only this, so it does not care where the particles came from.

Columns (RELION names where RELION has one):

- ``rlnImageName``: ``"<1-based index>@<stack file>"``, the stack path relative to the STAR file.
- ``rlnClassNumber``: 1-based index of the class in the study's class list.
- ``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi``: ZYZ Euler angles in degrees (RELION
  convention); for 2-D images only ``rlnAnglePsi`` (the in-plane angle) is meaningful.
- ``rlnDefocusU``: defocus in Å (0 when no CTF was applied).
- ``cryoavaeClassName``, ``cryoavaeSplit`` (``train``/``val``/``unseen``), ``cryoavaeSNR``,
  ``cryoavaeShard``: our own columns.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from .atomic import atomic_path
from .errors import InputError

IMAGE = "rlnImageName"
CLASS_NUMBER = "rlnClassNumber"
ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
DEFOCUS = "rlnDefocusU"
CLASS_NAME = "cryoavaeClassName"
SPLIT = "cryoavaeSplit"
SNR = "cryoavaeSNR"
SHARD = "cryoavaeShard"
REQUIRED_COLUMNS = (IMAGE, CLASS_NUMBER, *ANGLES, CLASS_NAME, SPLIT)
SPLITS = ("train", "val", "unseen")


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


def _open_mrc_stack(path: Path, box_ndim: int | None):
    """(open mrcfile mmap object, data viewed as ``(n, *box)``); see :func:`open_stack`."""
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


def stack_layout(path: str | os.PathLike, box_ndim: int | None = None) -> StackLayout:
    """Validate a stack's header (as :func:`open_stack` does) and return its layout."""
    path = Path(path)
    mrc, data = _open_mrc_stack(path, box_ndim)
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


def write_particle_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Validate and write a particle table as STAR, atomically."""
    _check_columns(table, path)
    with atomic_path(path) as tmp:
        starfile.write(table.reset_index(drop=True), tmp)
        # starfile stamps the wall-clock time into its first line; a fixed header keeps a seeded
        # run byte-for-byte reproducible.
        lines = tmp.read_text().splitlines(keepends=True)
        if lines and lines[0].startswith("# Created by the starfile"):
            lines[0] = "# cryoavae particle table\n"
        tmp.write_text("".join(lines))


def read_star_blocks(path: str | os.PathLike, what: str = "particle table") -> dict:
    """Every data block of a STAR file by name; a one-line InputError naming the file and
    ``what`` it should be if it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    try:
        return starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises several types for a corrupt file
        raise InputError(f"{path}: not a readable STAR file ({exc})") from exc


def read_particle_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a particle table written by :func:`write_particle_table`, with a clear error if not."""
    path = Path(path)
    blocks = read_star_blocks(path)
    if len(blocks) != 1:
        raise InputError(f"{path}: expected one data block, found {list(blocks)}")
    table = next(iter(blocks.values()))
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{path}: expected a table (loop_) block")
    _check_columns(table, path)
    table[CLASS_NAME] = table[CLASS_NAME].astype(str)
    table[SPLIT] = table[SPLIT].astype(str)
    bad = set(table[SPLIT]) - set(SPLITS)
    if bad:
        raise InputError(f"{path}: column {SPLIT} has {sorted(bad)}; expected one of {SPLITS}")
    return table


def _check_columns(table: pd.DataFrame, path: str | os.PathLike) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: particle table lacks columns {missing}")


def image_reference(index: int, stack_name: str) -> str:
    """RELION's ``index@stack`` with a 1-based index."""
    return f"{index + 1:06d}@{stack_name}"


def split_image_reference(ref: str) -> tuple[int, str]:
    """Inverse of :func:`image_reference`: 0-based index and stack path."""
    index, _, stack = str(ref).partition("@")
    if not stack or not index.isdigit() or int(index) < 1:
        raise InputError(f"{IMAGE} value {ref!r} is not of the form <index>@<stack> (index >= 1)")
    return int(index) - 1, stack


class ParticleImages:
    """Read-only access to the images of a particle table, a batch at a time.

    ``images.gather(rows)`` returns a batch as float32, read with positioned reads (``preadv``)
    straight into the batch array, one system call per run of consecutive images in a stack.
    Nothing else stays in memory: a memory map would do the same copy but keep every touched page
    mapped, so a training process would grow by the size of its data set (10^4 64x64 images:
    +160 MB) and could not train on more particles than fit in memory. Re-read batches come from
    the page cache. Startup is cheap: headers are read when a stack is first needed.
    """

    def __init__(
        self, table: pd.DataFrame, star_path: str | os.PathLike, box_ndim: int | None = None
    ):
        self.root = Path(star_path).parent
        self.box_ndim = box_ndim
        refs = [split_image_reference(r) for r in table[IMAGE]]
        self.index = np.array([i for i, _ in refs], dtype=np.int64)
        stack_names = [s for _, s in refs]
        self.stack_names, self.stack_of_row = np.unique(stack_names, return_inverse=True)
        self._layouts: dict[int, StackLayout] = {}
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()  # a reader thread and the caller may open stacks at once

    def __len__(self) -> int:
        return len(self.index)

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the open stack files (they are reopened when needed). Not during a read."""
        with getattr(self, "_lock", threading.Lock()):
            for fd in getattr(self, "_fds", {}).values():
                os.close(fd)
            self._fds = {}

    def _layout(self, k: int) -> StackLayout:
        if k not in self._layouts:
            first = self._layout(0) if k != 0 else None  # every stack must match the first
            layout = stack_layout(self.root / self.stack_names[k], self.box_ndim)
            top = self.index[self.stack_of_row == k].max()
            if top >= layout.n_items:
                raise InputError(
                    f"{layout.path}: table asks for image {top + 1}, stack holds {layout.n_items}"
                )
            if first is not None and layout.item_shape != first.item_shape:
                raise InputError(
                    f"{layout.path}: holds boxes of shape {layout.item_shape}, but "
                    f"{first.path.name} holds {first.item_shape}"
                )
            self._layouts[k] = layout
        return self._layouts[k]

    def _fd(self, k: int) -> int:
        with self._lock:
            if k not in self._fds:
                path = self._layout(k).path
                self._fds[k] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            return self._fds[k]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._layout(0).item_shape)

    @property
    def item_bytes(self) -> int:
        """Bytes of one image as float32."""
        return 4 * int(np.prod(self.shape[1:]))

    def gather(self, rows: Sequence[int] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images of table ``rows`` as float32 ``(len(rows), *box)``, into ``out`` if given."""
        rows = np.asarray(rows, dtype=np.int64)
        shape = (len(rows), *self.shape[1:])
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"gather: out must be C-contiguous float32 {shape}")
        stacks = self.stack_of_row[rows]
        for k in np.unique(stacks):
            dest = np.flatnonzero(stacks == k)  # positions in ``out``
            self._read(int(k), self.index[rows[dest]], out, dest)
        return out

    def _read(self, k: int, index: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
        """Stack ``k``'s images ``index`` into ``out[dest]``, a run of consecutive images per
        system call."""
        layout, fd = self._layout(k), self._fd(k)
        order = np.argsort(index, kind="stable")
        index, dest = index[order], dest[order]
        run_starts = np.flatnonzero(np.diff(index, prepend=-2) != 1)
        run_ends = np.append(run_starts[1:], len(index))
        direct = layout.dtype == np.dtype("=f4")
        for start, end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
            offset = layout.data_offset + int(index[start]) * layout.item_bytes
            expected = (end - start) * layout.item_bytes
            if direct:  # straight into the rows of ``out``
                got = _preadv(fd, [out[d] for d in dest[start:end].tolist()], offset)
            else:  # another dtype or byte order: read as stored, then convert
                stored = np.empty((end - start, *layout.item_shape), dtype=layout.dtype)
                got = _preadv(fd, [stored], offset)
                out[dest[start:end]] = stored
            if got != expected:
                raise InputError(
                    f"{layout.path}: file ends early (read {got} of {expected} bytes at {offset})"
                )

    def __getitem__(self, row: int) -> np.ndarray:
        return self.gather([row])[0]


IOV_MAX = 1024  # buffers per preadv call (the POSIX minimum is 16; Linux and macOS allow 1024)


def _preadv(fd: int, buffers: list[np.ndarray], offset: int) -> int:
    """Fill ``buffers`` in order from file ``offset``; the bytes read, fewer only at end of file.

    A read may return early (it never does for a local file, but may for a network file system),
    so it carries on from where the last one stopped.
    """
    views = [memoryview(b).cast("B") for b in buffers]  # flat byte views of contiguous arrays
    first, total = 0, 0
    while first < len(views):
        got = os.preadv(fd, views[first : first + IOV_MAX], offset + total)
        if got == 0:
            break
        total += got
        while first < len(views) and got >= len(views[first]):
            got -= len(views[first])
            first += 1
        if got:
            views[first] = views[first][got:]
    return total
