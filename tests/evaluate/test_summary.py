"""The comparison table and figure across model variants."""

from pathlib import Path

import pandas as pd
import pytest

from cryoavae.evaluate.summary import SUMMARY_FIGURES, figure_links, summary_table
from cryoavae.report.summary_figures import plot_variant_comparison


def test_summary_table_one_row_per_variant(tmp_path):
    metrics = [
        {"accuracy": 0.9, "macro_f1": 0.88, "silhouette": 0.5, "unseen": {"x": {"match": True}}},
        {"accuracy": 0.6, "macro_f1": 0.55, "silhouette": -0.1, "unseen": {"x": {"match": False}}},
    ]
    summaries = [{"epochs": 3}, {"epochs": 3}]
    table = summary_table(["avae", "beta_vae"], metrics, summaries)
    assert list(table["variant"]) == ["avae", "beta_vae"]
    assert list(table["unseen_matched"]) == ["1/1", "0/1"]
    assert table.loc[1, "silhouette"] == -0.1 and pd.isna(table.loc[0, "novelty_auroc"])
    plot_variant_comparison(tmp_path / "c.png", table)
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_summary_markdown_reports_the_metrics_it_was_given():
    from cryoavae.evaluate.summary import summary_markdown

    metrics = [
        {
            "accuracy": 0.91234,
            "macro_f1": 0.9,
            "silhouette": 0.5,
            "train_seconds": 12.3,
            "device": "cpu",
            "unseen": {"v": {"nearest_seen": "a", "highest_affinity_seen": "a", "match": True}},
        },
    ]
    table = summary_table(["avae"], metrics, [{"epochs": 2}])
    text = summary_markdown("chars", table, metrics, {"UMAP": "models/avae/umap.png"})
    assert "| avae | 0.912 | 0.900 | 0.500 | – |" in text
    assert "unseen v lands nearest a; its highest-affinity seen class is a (match)" in text
    assert 'src="models/avae/umap.png"' in text
    assert "known truth" not in text
    users = summary_markdown("mine", table, metrics, {}, angles_from="the STAR file's angles")
    assert "compare the model's pose with the STAR file's angles, not with a known truth" in users


@pytest.mark.parametrize("where", ["seed7", "."])
def test_summary_figures_are_the_studys_own_linked_from_where_summary_md_is(tmp_path, where):
    """seed<k>/summary.md and the study's summary.md both link the first variant's figures under
    results/<study>/, relative to their own folder, so the links open in any Markdown viewer."""
    study = tmp_path / "results" / "mine"
    models = study / "seed7" / "models" / "avae"
    models.mkdir(parents=True)
    for name in SUMMARY_FIGURES:
        (models / f"{name}.png").write_bytes(b"\x89PNG")
    markdown = study / where / "summary.md"
    links = figure_links(models / "metrics.json", markdown)
    assert sorted(links) == sorted(SUMMARY_FIGURES)
    for link in links.values():
        assert not Path(link).is_absolute() and "docs/images" not in link
        assert (markdown.parent / link).is_file()
