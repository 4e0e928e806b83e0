"""Reading a particle table's images a batch at a time, straight from the stacks."""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.core.errors import InputError
from cryoavae.geometry.translation import moved
from cryoavae.particles.stacks import StackLayout, stack_layout, stack_voxel_size
from cryoavae.particles.table import IMAGE, RECENTRE, VOXEL_SIZE, parse_image_references


class ParticleImages:
    """Read-only access to the images of a particle table, a batch at a time.

    ``images.gather(rows)`` returns a batch as float32, read with positioned reads (``preadv``)
    straight into the batch array, one system call per run of consecutive images in a stack.
    Nothing else stays in memory: a memory map would do the same copy but keep every touched page
    mapped, so a training process would grow by the size of its data set (10^4 64x64 images:
    +160 MB) and could not train on more particles than fit in memory. Re-read batches come from
    the page cache. Startup is cheap: headers are read when a stack is first needed.

    A table with the ``RECENTRE`` columns (where an earlier model found each particle's centre)
    is read re-centred: each 3-D image moved by a Fourier phase so that point sits on the box
    centre, as subtomogram averaging re-extracts at refined positions, without a second copy of
    the stacks on disk.
    """

    def __init__(
        self, table: pd.DataFrame, star_path: str | os.PathLike, box_ndim: int | None = None
    ):
        self.root = Path(star_path).parent
        self.box_ndim = box_ndim
        self.index, stack_names, whole = parse_image_references(table[IMAGE])
        self.stack_names, self.stack_of_row = np.unique(
            stack_names.astype(str), return_inverse=True
        )
        self.whole = np.zeros(len(self.stack_names), dtype=bool)  # (stacks,) one particle each
        self.whole[self.stack_of_row[whole]] = True
        mixed = np.zeros(len(self.stack_names), dtype=bool)
        mixed[self.stack_of_row[~whole]] = True
        if (mixed & self.whole).any():
            name = self.stack_names[int(np.argmax(mixed & self.whole))]
            raise InputError(f"{IMAGE}: {name} is named both as a whole file and as index@file")
        self.top_index = np.zeros(len(self.stack_names), dtype=np.int64)  # (stacks,)
        np.maximum.at(self.top_index, self.stack_of_row, self.index)
        first = self.root / self.stack_names[0] if len(self.stack_names) else self.root
        self.recentre_px = _recentre_px(table, star_path, first)  # (n, 3) voxels, or None
        self._layouts: dict[int, StackLayout] = {}
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()  # a reader thread and the caller may open stacks at once

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, rows: Sequence[int] | np.ndarray) -> ParticleImages:
        """The images of table ``rows`` only, as their own ``ParticleImages`` (row ``i`` of the
        subset is table row ``rows[i]``): a job that works on part of a table reads only that
        part. Shares the stacks' headers already read, not the open files."""
        rows = np.asarray(rows, dtype=np.int64)
        part = copy.copy(self)
        part.index, part.stack_of_row = self.index[rows], self.stack_of_row[rows]
        if self.recentre_px is not None:
            part.recentre_px = self.recentre_px[rows]
        part.top_index = np.zeros(len(self.stack_names), dtype=np.int64)
        np.maximum.at(part.top_index, part.stack_of_row, part.index)
        part._layouts, part._fds, part._lock = dict(self._layouts), {}, threading.Lock()
        return part

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
            path = self.root / self.stack_names[k]
            layout = self._same_file_layout(first, path) if self.whole[k] else None
            if layout is None:
                layout = stack_layout(path, self.box_ndim, whole=bool(self.whole[k]))
            if self.top_index[k] >= layout.n_items:
                raise InputError(
                    f"{layout.path}: table asks for image {self.top_index[k] + 1}, stack holds "
                    f"{layout.n_items}"
                )
            if first is not None and layout.item_shape != first.item_shape:
                raise InputError(
                    f"{layout.path}: holds boxes of shape {layout.item_shape}, but "
                    f"{first.path.name} holds {first.item_shape}"
                )
            self._layouts[k] = layout
        return self._layouts[k]

    @staticmethod
    def _same_file_layout(first: StackLayout | None, path: Path) -> StackLayout | None:
        """One particle per file (10^5 files, say): a file of exactly the first one's size has
        its layout, so only its size is read, not its header; None if that cannot be told."""
        if first is None or first.n_items != 1:
            return None
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise InputError(f"{path}: particle file not found") from None
        if size != first.data_offset + first.item_bytes:
            return None  # another header size or box: read its header to say which
        return dataclasses.replace(first, path=path)

    def validate(self) -> None:
        """Check every file the table names now (exists, holds the images asked for, same box),
        instead of when a batch first needs it."""
        for k in range(len(self.stack_names)):
            self._layout(k)

    def _fd(self, k: int) -> int:
        with self._lock:
            if k not in self._fds:
                path = self._layout(k).path
                if self.whole[k] and len(self._fds) >= MAX_OPEN_FILES:
                    for fd in self._fds.values():  # one particle per file: do not hoard them
                        os.close(fd)
                    self._fds = {}
                self._fds[k] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            return self._fds[k]

    @property
    def voxel_size_angstrom(self) -> float:
        """The voxel size (Å) in the header of the table's first stack."""
        return stack_voxel_size(self.root / self.stack_names[0])

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
        if not np.isfinite(out.sum()):  # one fast pass; NaN and infinities survive a sum
            self._refuse_non_finite(rows, out)
        if self.recentre_px is not None and len(rows):
            if out.ndim != 4:
                raise InputError(f"{' / '.join(RECENTRE)}: re-centring needs 3-D particles")
            for start in range(0, len(rows), RECENTRE_CHUNK):  # FFT memory: a chunk at a time
                part = slice(start, start + RECENTRE_CHUNK)
                out[part] = moved(out[part], -self.recentre_px[rows[part]])
        return out

    def _refuse_non_finite(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Name the first image of a batch that holds a NaN or an infinity (or values so large
        that their sum overflows, which no normalised particle has)."""
        flat = out.reshape(len(out), -1)
        bad = ~np.isfinite(flat).all(axis=1)
        if not bad.any():  # finite, but the float32 sum overflowed
            bad = np.abs(flat).max(axis=1) > 1e30
        first = int(np.argmax(bad))
        k, row = self.stack_of_row[rows[first]], int(rows[first])
        raise InputError(
            f"{self.root / self.stack_names[k]}: image {self.index[row] + 1} (table row "
            f"{row + 1}) holds NaN, infinite or absurdly large values; {int(bad.sum())} of this "
            "batch do"
        )

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


RECENTRE_CHUNK = 64  # images moved at once when a table is read re-centred
MAX_OPEN_FILES = 256  # files held open at once when every particle is a file of its own
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


def table_voxel_size(table: pd.DataFrame, star_path: str | os.PathLike) -> float:
    """The particles' voxel size (Å): the table's ``rlnImagePixelSize`` when it has one, else the
    header of the first stack it names."""
    if VOXEL_SIZE in table.columns and len(table):
        value = float(pd.to_numeric(table[VOXEL_SIZE], errors="coerce").iloc[0])
        if value > 0:
            return value
    _, stacks, _ = parse_image_references(table[IMAGE].iloc[:1])
    return stack_voxel_size(Path(star_path).parent / stacks[0])


def _recentre_px(
    table: pd.DataFrame, star_path: str | os.PathLike, stack: Path
) -> np.ndarray | None:
    """The ``RECENTRE`` columns in voxels ``(n, 3)`` of ``stack``'s voxel size (the one the
    matcher's shifts were converted to Å with); None when the table has none of them."""
    present = [c for c in RECENTRE if c in table.columns]
    if not present:
        return None
    if len(present) != len(RECENTRE):
        raise InputError(f"{star_path}: has {present} but not all of {list(RECENTRE)}")
    shifts = table[list(RECENTRE)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if not np.isfinite(shifts).all():
        row = int(np.argmax(~np.isfinite(shifts).all(axis=1)))
        raise InputError(f"{star_path}: row {row + 1} has no number in {list(RECENTRE)}")
    if not len(table):
        return shifts
    voxel = stack_voxel_size(stack)
    if not voxel > 0:
        raise InputError(f"{stack}: its header gives no voxel size; re-centring needs it")
    return shifts / voxel
