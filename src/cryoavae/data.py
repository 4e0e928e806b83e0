"""Particles in memory for training: one split's images and labels as tensors, read once.

A study's train and val splits are small enough to hold in memory (~3,000 x 32^3 float32 is
400 MB), and one copy there beats re-reading memory-mapped stacks every epoch. The copy is
filled a small slice at a time from freshly opened memory maps that are dropped after each slice,
so the process never holds the mapped stack pages and the copy together (which would double the
peak memory), and the temporaries stay small enough that the allocator does not keep them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import InputError
from .particles import CLASS_NAME, CLASS_NUMBER, SPLIT, SPLITS, ParticleImages, open_stack

READ_SLICE_BYTES = 4 * 2**20  # stack pages mapped (and copied through a temporary) at once


@dataclass(frozen=True)
class SplitTensors:
    """One split of a particle table, in memory."""

    images: torch.Tensor  # (n, 1, *box) float32
    labels: torch.Tensor  # (n,) int64: rlnClassNumber - 1, an index into the affinity matrix
    rows: np.ndarray  # (n,) positions of these particles in the table

    def __len__(self) -> int:
        return len(self.rows)


def class_names_from_table(table: pd.DataFrame) -> list[str]:
    """Class names by index (``rlnClassNumber - 1``), checking that each number has one name.

    Numbers with no particles in the table get the placeholder name ``class_<number>``.
    """
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


def read_images(images: ParticleImages, rows: np.ndarray) -> np.ndarray:
    """Images of table ``rows`` as one new float32 array ``(n, *box)``.

    Reads stack by stack in file order, at most :data:`READ_SLICE_BYTES` of mapped pages at a time.
    """
    rows = np.asarray(rows, dtype=np.int64)
    box_shape = images.shape[1:]
    out = np.empty((len(rows), *box_shape), dtype=np.float32)
    per_slice = max(1, READ_SLICE_BYTES // (4 * int(np.prod(box_shape))))
    stack_of = images.stack_of_row[rows]
    for k in np.unique(stack_of):
        dest = np.nonzero(stack_of == k)[0]  # positions in ``out``
        index = images.index[rows[dest]]  # positions in the stack file
        order = np.argsort(index, kind="stable")
        dest, index = dest[order], index[order]
        path = images.root / images.stack_names[k]
        for start in range(0, len(dest), per_slice):
            stack = open_stack(path, images.box_ndim)  # a fresh map, released below
            if index[-1] >= len(stack):
                raise InputError(
                    f"{path}: table asks for image {index[-1] + 1}, stack holds {len(stack)}"
                )
            part = slice(start, start + per_slice)
            out[dest[part]] = stack[index[part]]
            del stack
    return out


def load_split(table: pd.DataFrame, images: ParticleImages, split: str) -> SplitTensors:
    """The particles of ``split`` (``train``, ``val`` or ``unseen``) as tensors, in table order."""
    if split not in SPLITS:
        raise ValueError(f"load_split: split {split!r} is not one of {SPLITS}")
    rows = np.nonzero((table[SPLIT].astype(str) == split).to_numpy())[0]
    labels = table[CLASS_NUMBER].to_numpy()[rows].astype(np.int64) - 1
    array = read_images(images, rows) if len(rows) else np.empty((0, *images.shape[1:]), "f4")
    pixels = torch.from_numpy(array)  # shares memory with ``array``: no second copy
    return SplitTensors(pixels.unsqueeze(1), torch.from_numpy(labels), rows)


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """Index batches covering ``range(n)`` once: shuffled by ``generator``, in order without it.

    The last batch may be smaller; none is empty.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)
