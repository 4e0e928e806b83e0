"""Put studies' results into README.md or docs/science.md: the pipeline's summary.md fragments
and figures.

Usage: ``python tools/update_readme_results.py [--into docs/science.md] [--results DIR] STUDY ...``
(``--into``: the file with the markers, README.md by default; ``--results``: the folder holding
``<study>/summary.md``, ``results`` by default, e.g. the ``results`` of a run made with
``snakemake --directory``.)

For each study, replaces the README text between ``<!-- results:<study> -->`` and
``<!-- /results:<study> -->`` with ``results/<study>/summary.md`` (mean ± sd over the study's
seeds, written by the aggregate_seeds rule with the command that made it). The fragment links the
study's own figures (``seed<k>/models/<variant>/umap.png`` etc., relative to ``results/<study>/``);
each is copied to ``docs/images/<study>/`` and its link rewritten to that copy, so the README
shows figures that are kept in the repository. Nothing is typed by hand, so the README's numbers
are those of the metrics.json files.
"""

from __future__ import annotations

import argparse
import re
import shutil
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


def update(
    study: str, readme: Path = REPO / "README.md", results_root: Path = REPO / "results"
) -> None:
    """Replace the text between ``study``'s markers in ``readme`` (any Markdown file of the
    repository) with the study's summary.md, its figures linked relative to that file."""
    results = Path(results_root) / study
    if not (results / "summary.md").is_file():
        raise SystemExit(f"{results}: no summary.md; run the study first")
    readme = Path(readme).resolve()
    fragment = readme_fragment(results, REPO / "docs" / "images" / study, repo=readme.parent)
    text = readme.read_text()
    start, end = f"<!-- results:{study} -->", f"<!-- /results:{study} -->"
    if start not in text or end not in text:
        raise SystemExit(f"{readme.name} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{fragment}{end}{tail}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", metavar="STUDY")
    parser.add_argument("--into", type=Path, default=REPO / "README.md")
    parser.add_argument("--results", type=Path, default=REPO / "results")
    arguments = parser.parse_args()
    for name in arguments.studies:
        update(name, arguments.into, arguments.results)
