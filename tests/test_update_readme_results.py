"""tools/update_readme_results.py: the README gets a study's summary.md with its figure links
moved to copies under docs/images/<study>/ (summary.md itself links the study's own files)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "update_readme_results", ROOT / "tools" / "update_readme_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_links_copies_of_the_figures_summary_md_links(tmp_path):
    tool = load_tool()
    results = tmp_path / "results" / "mine"
    models = results / "seed3" / "models" / "avae"
    models.mkdir(parents=True)
    (models / "umap.png").write_bytes(b"\x89PNG umap")
    (results / "summary.md").write_text(
        '| a |\n\n<img src="seed3/models/avae/umap.png" alt="umap" width="260">\n'
    )
    images = tmp_path / "docs" / "images" / "mine"
    fragment = tool.readme_fragment(results, images, repo=tmp_path)
    assert '<img src="docs/images/mine/umap.png" alt="umap" width="260">' in fragment
    assert (images / "umap.png").read_bytes() == b"\x89PNG umap"
    assert fragment.startswith("| a |")
