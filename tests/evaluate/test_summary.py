"""The comparison table and figure across model variants."""

import pandas as pd

from cryoavae.evaluate.summary import summary_table
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
    text = summary_markdown("chars", table, metrics, {"UMAP": "docs/images/chars/umap.png"})
    assert "| avae | 0.912 | 0.900 | 0.500 | – |" in text
    assert "unseen v lands nearest a; its highest-affinity seen class is a (match)" in text
    assert 'src="docs/images/chars/umap.png"' in text


def test_an_identity_prior_is_reported_as_no_prior_not_as_a_miss():
    from cryoavae.evaluate.summary import summary_markdown

    unseen = {"v": {"nearest_seen": "a", "highest_affinity_seen": None, "match": None}}
    metrics = [{"accuracy": 0.5, "unseen": unseen}]
    table = summary_table(["beta_vae"], metrics, [{"epochs": 2}])
    assert list(table["unseen_matched"]) == ["–"]
    text = summary_markdown("mine", table, metrics, {})
    assert "unseen v lands nearest a; the prior ranks no seen class above another" in text
