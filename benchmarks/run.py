"""Project benchmark: one JSON object per line, ``{"name": ..., "value": ..., "unit": ...}``.

Usage: ``python benchmarks/run.py [--quick] [--only affinity,simulate,train]``.
Each stage lives in ``benchmarks/bench_<stage>.py`` as ``run(quick: bool) -> list[dict]``.
Figures are medians of repeated runs; ratios are measured within one run so machine noise cancels.
Each stage's wall time goes to stderr, so that a run over its time budget says where the time went.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

STAGES = (
    "affinity",
    "simulate",
    "tomogram",
    "extract",
    "characters",
    "train",
    "evaluate",
    "star",
    "inference",
    "ddp",
    "pose",
    "match",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--only", default=",".join(STAGES), help="comma-separated stages")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    for stage in args.only.split(","):
        start = time.perf_counter()
        module = importlib.import_module(f"bench_{stage}")
        for figure in module.run(quick=args.quick):
            print(json.dumps(figure), flush=True)
        print(f"stage {stage}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
