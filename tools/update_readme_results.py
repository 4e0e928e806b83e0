"""Put studies' results into README.md: the pipeline's summary.md fragments and figures.

Usage: ``python tools/update_readme_results.py STUDY [STUDY ...]``

For each study, replaces the README text between ``<!-- results:<study> -->`` and
``<!-- /results:<study> -->`` with ``results/<study>/summary.md`` (mean ± sd over the study's
seeds, written by the aggregate_seeds rule with the command that made it). The fragment links the
study's own figures (``seed<k>/models/<variant>/umap.png`` etc., relative to ``results/<study>/``);
each is copied to ``docs/images/<study>/`` and its link rewritten to that copy, so the README
shows figures that are kept in the repository. Nothing is typed by hand, so the README's numbers
are those of the metrics.json files.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r'src="([^"]+\.png)"')


def readme_fragment(results: Path, images: Path, repo: Path = REPO) -> str:
    """``results/summary.md`` with every figure it links copied to ``images`` and its link
    rewritten relative to ``repo`` (the README's folder)."""
    fragment = (results / "summary.md").read_text()
    images.mkdir(parents=True, exist_ok=True)

    def copied(match: re.Match) -> str:
        source = results / match.group(1)
        if not source.is_file():
            raise SystemExit(f"{source}: figure linked by {results / 'summary.md'} not found")
        shutil.copyfile(source, images / source.name)
        return f'src="{(images / source.name).relative_to(repo).as_posix()}"'

    return LINK.sub(copied, fragment)


def update(study: str, readme: Path = REPO / "README.md") -> None:
    results = REPO / "results" / study
    if not (results / "summary.md").is_file():
        raise SystemExit(f"{results}: no summary.md; run the study first")
    fragment = readme_fragment(results, REPO / "docs" / "images" / study)
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
