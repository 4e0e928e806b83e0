"""tools/update_readme_results.py: the README gets a study's summary.md with its figure links
moved to copies under docs/images/<study>/ (summary.md itself links the study's own files)."""

from tool_scripts import load_tool


def test_the_readme_links_copies_of_the_figures_summary_md_links(tmp_path):
    tool = load_tool("update_readme_results")
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


def test_a_doc_below_the_root_gets_its_fragment_with_links_relative_to_itself(
    tmp_path, monkeypatch
):
    """--into docs/science.md and --results of a run made elsewhere: the text between the
    study's markers is replaced, the rest kept, the figures linked from docs/."""
    tool = load_tool("update_readme_results")
    monkeypatch.setattr(tool, "REPO", tmp_path)
    results = tmp_path / "elsewhere" / "results" / "mine"
    (results / "seed3").mkdir(parents=True)
    (results / "seed3" / "umap.png").write_bytes(b"\x89PNG")
    (results / "summary.md").write_text('| b |\n<img src="seed3/umap.png" alt="umap">\n')
    doc = tmp_path / "docs" / "science.md"
    doc.parent.mkdir()
    doc.write_text("before\n<!-- results:mine -->\nold\n<!-- /results:mine -->\nafter\n")
    tool.update("mine", doc, tmp_path / "elsewhere" / "results")
    text = doc.read_text()
    assert text.startswith("before\n<!-- results:mine -->\n| b |") and text.endswith("after\n")
    assert "old" not in text and '<img src="images/mine/umap.png"' in text
    assert (tmp_path / "docs" / "images" / "mine" / "umap.png").is_file()
