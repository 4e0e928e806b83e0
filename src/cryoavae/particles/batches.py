"""Particles for training: a split's rows and labels, and its images a batch at a time.

Two ways to serve a batch, chosen by :func:`batch_source`:

- :class:`StreamedBatches` (CPU, and CUDA when the split does not fit in GPU memory) reads each
  batch from the stacks into one reused buffer (:meth:`ParticleImages.gather`). The process holds
  one batch, not the data set, so it trains on more particles than fit in memory; after the first
  epoch the reads come from the page cache and cost about as much as gathering from a tensor.
- :class:`ResidentBatches` (CUDA) copies the split into GPU memory once, a chunk at a time, so
  that no host copy or synchronisation stands between the GPU's steps.

Both give the same batches for the same indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cryoavae.core.errors import InputError
from cryoavae.particles import (
    CLASS_NAME,
    CLASS_NUMBER,
    DEFOCUS,
    SPLIT,
    SPLITS,
    ParticleImages,
    defocus_um,
)

CHUNK_BYTES = 64 * 2**20  # host memory used at once while copying a split to the GPU
GPU_SHARE = 0.5  # keep a split on the GPU only if it takes at most this share of free memory


@dataclass(frozen=True)
class Split:
    """One split of a particle table: which rows, their labels and their defocus."""

    rows: np.ndarray  # (n,) positions of these particles in the table
    labels: np.ndarray  # (n,) int64: rlnClassNumber - 1, an index into the affinity matrix
    defocus_um: np.ndarray | None = None  # (n,) rlnDefocusU in µm; None: the table has none

    def __len__(self) -> int:
        return len(self.rows)


def class_names_from_table(table: pd.DataFrame) -> list[str]:
    """Class names by index (``rlnClassNumber - 1``), checking that each number has one name.

    Numbers with no particles in the table get the placeholder name ``class_<number>``; class
    number 0 (a class outside the study's list, always ``unseen``) is left out.
    """
    table = table[table[CLASS_NUMBER] != 0]  # classes outside the study's list (always unseen)
    numbers = table[CLASS_NUMBER].to_numpy()
    if len(numbers) == 0:
        return []
    if not np.issubdtype(numbers.dtype, np.integer) or numbers.min() < 1:
        raise InputError(
            f"particle table: {CLASS_NUMBER} must be integers >= 1, got values such as "
            f"{numbers[:3].tolist()}"
        )
    pairs = table[[CLASS_NUMBER, CLASS_NAME]].drop_duplicates()
    clash = pairs[pairs[CLASS_NUMBER].duplicated(keep=False)]
    if len(clash):
        number = int(clash[CLASS_NUMBER].iloc[0])
        names = sorted(clash.loc[clash[CLASS_NUMBER] == number, CLASS_NAME].astype(str))
        raise InputError(f"particle table: {CLASS_NUMBER} {number} has several names {names}")
    names = [f"class_{k}" for k in range(1, int(numbers.max()) + 1)]
    for number, name in zip(pairs[CLASS_NUMBER], pairs[CLASS_NAME], strict=True):
        names[int(number) - 1] = str(name)
    return names


def select_split(table: pd.DataFrame, split: str) -> Split:
    """The rows of ``split`` (``train``, ``val`` or ``unseen``), in table order."""
    if split not in SPLITS:
        raise ValueError(f"select_split: split {split!r} is not one of {SPLITS}")
    rows = np.flatnonzero((table[SPLIT].astype(str) == split).to_numpy())
    labels = table[CLASS_NUMBER].to_numpy()[rows].astype(np.int64) - 1
    defocus = defocus_um(table)[rows] if DEFOCUS in table.columns else None
    return Split(rows, labels, defocus)


class _SplitSource:
    """What both batch sources share: the split's size and each batch's defocus."""

    def __init__(self, split: Split, device: torch.device):
        self.split, self.device = split, device
        self._labels = torch.from_numpy(split.labels).to(device)
        self._defocus = None
        if split.defocus_um is not None:
            self._defocus = torch.from_numpy(split.defocus_um).float().to(device)

    def __len__(self) -> int:
        return len(self.split)

    def defocus_um(self, idx: torch.Tensor) -> torch.Tensor:
        """The defocus (µm) of the particles at ``idx`` (positions in the split), on the device."""
        if self._defocus is None:
            raise InputError(f"particle table: no {DEFOCUS} column; the model measures the CTF")
        return self._defocus[idx.to(self.device)]


def value_range(images: ParticleImages, rows: np.ndarray) -> tuple[float, float]:
    """(min, max) over the images of ``rows``, read a chunk at a time."""
    low, high = np.inf, -np.inf
    per_chunk = max(1, CHUNK_BYTES // images.item_bytes)
    for start in range(0, len(rows), per_chunk):
        chunk = images.gather(rows[start : start + per_chunk])
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
    return low, high


class StreamedBatches(_SplitSource):
    """A split's batches read from the stacks on demand, each while the one before is in use.

    :meth:`iterate` yields ``(x (b, 1, *box), y (b,))`` on ``device``, every ``x`` a new tensor
    of its own (allocating it costs no more than refilling a buffer, measured here, and nothing a
    caller keeps can be overwritten behind autograd's back). A helper thread reads the next batch
    (the read is a system call that releases the GIL) while the caller computes on the current
    one. On CUDA this is the fallback for splits too large for the GPU: each batch is copied from
    pageable memory, which waits for the GPU's queued work.
    """

    def __init__(self, images: ParticleImages, split: Split, device: torch.device):
        super().__init__(split, device)
        self.images = images

    def _read(self, idx: torch.Tensor) -> np.ndarray:
        return self.images.gather(self.split.rows[idx.numpy()])

    def iterate(
        self, index_batches: Iterable[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        index_batches = list(index_batches)
        if not index_batches:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-batches") as reader:
            pending = reader.submit(self._read, index_batches[0])
            for k, idx in enumerate(index_batches):
                images = pending.result()
                if k + 1 < len(index_batches):
                    pending = reader.submit(self._read, index_batches[k + 1])
                x = torch.from_numpy(images).unsqueeze(1).to(self.device)
                yield x, self._labels[idx.to(self.device)]


class ResidentBatches(_SplitSource):
    """A split held on ``device``, copied there :data:`CHUNK_BYTES` at a time; a batch is an index
    gather. Same :meth:`iterate` as :class:`StreamedBatches`."""

    def __init__(self, images: ParticleImages, split: Split, device: torch.device):
        super().__init__(split, device)
        box = images.shape[1:] if len(split) else ()
        self.images = torch.empty((len(split), 1, *box), device=device)
        per_chunk = max(1, CHUNK_BYTES // images.item_bytes) if len(split) else 1
        for start in range(0, len(split), per_chunk):
            host = images.gather(split.rows[start : start + per_chunk])
            self.images[start : start + len(host), 0] = torch.from_numpy(host).to(device)

    def iterate(
        self, index_batches: Iterable[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in index_batches:
            idx = idx.to(self.device, non_blocking=True)
            yield self.images[idx], self._labels[idx]


def keep_on_device(nbytes: int, device: torch.device) -> bool:
    """Hold ``nbytes`` of particles (train and val together) on the device? On CUDA if they fit
    in :data:`GPU_SHARE` of the free memory, leaving the rest for the model, optimiser state and
    activations; never on the CPU, where streaming from the page cache costs about the same."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= GPU_SHARE * free


def batch_source(
    images: ParticleImages, split: Split, device: torch.device, resident: bool
) -> StreamedBatches | ResidentBatches:
    """The batches of ``split``: held on the device (``resident``) or streamed from the stacks."""
    if resident:
        return ResidentBatches(images, split, device)
    return StreamedBatches(images, split, device)


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Index batches covering ``range(n)`` once: shuffled by ``generator``, in order without it.

    The last batch may be smaller; none is empty.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)
