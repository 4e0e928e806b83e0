"""Put studies' results into README.md: the pipeline's summary.md fragments and figures.

Usage: ``python tools/update_readme_results.py STUDY [STUDY ...]``

For each study, copies the first model variant's UMAP, confusion matrix and pose figures from
its first seed (``results/<study>/seed<k>/models/<variant>/``) to ``docs/images/<study>/`` and
replaces the README text between ``<!-- results:<study> -->`` and ``<!-- /results:<study> -->``
with ``results/<study>/summary.md`` (mean ± sd over the study's seeds, written by the
aggregate_seeds rule with the command that made it). Nothing is typed by hand, so the README's
numbers are those of the metrics.json files.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def update(study: str, readme: Path = REPO / "README.md") -> None:
    results = REPO / "results" / study
    fragment = (results / "summary.md").read_text()
    first = pd.read_csv(results / "summary.tsv", sep="\t")["variant"].iloc[0]
    seeds = sorted(results.glob("seed*"), key=lambda path: int(path.name[len("seed") :]))
    if not seeds:
        raise SystemExit(f"{results}: no seed<k> folder; run the study first")
    images = REPO / "docs" / "images" / study
    images.mkdir(parents=True, exist_ok=True)
    for name in ("umap", "confusion_matrix", "pose_correlation"):
        shutil.copyfile(seeds[0] / "models" / first / f"{name}.png", images / f"{name}.png")
    text = readme.read_text()
    start, end = f"<!-- results:{study} -->", f"<!-- /results:{study} -->"
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{fragment}{end}{tail}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        update(name)
