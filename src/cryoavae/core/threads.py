"""How many threads a rule's process computes with, for torch and numba alike."""

from __future__ import annotations

import os
import sys

__all__ = ["use_threads"]


def use_threads(n: int) -> None:
    """Compute with ``n`` threads in torch and in numba's kernels (volume rotation, averaging).

    Both run on the OpenMP runtime torch loads: numba left at every core beside a torch set to
    fewer made the template matching after a class average 4-5 times slower in one process
    (fit_references' second reference pass, docs/performance.md). numba not yet imported is
    told through ``NUMBA_NUM_THREADS``."""
    import torch

    n = max(1, int(n))
    torch.set_num_threads(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
