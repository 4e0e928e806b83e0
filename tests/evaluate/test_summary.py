"""The comparison table and figure across model variants."""

import json
from pathlib import Path

import pandas as pd
import pytest

from cryoavae.evaluate.summary import (
    SUMMARY_FIGURES,
    figure_links,
    run_summary,
    summary_table,
)
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
            "novelty_auroc": 0.75,
            "novelty_unseen_recall": 0.25,
            "unseen": {"v": {"nearest_seen": "a", "highest_affinity_seen": "a", "match": True}},
        },
    ]
    table = summary_table(["avae"], metrics, [{"epochs": 2}])
    text = summary_markdown("chars", table, metrics, {"UMAP": "models/avae/umap.png"})
    assert "| avae | 0.912 | 0.900 | 0.500 | – |" in text
    assert "| novelty AUROC | unseen flagged |" in text and "| 0.750 | 0.250 | 1/1 |" in text
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


def write_metrics(study: Path, seed: int, variant: str, **metrics) -> None:
    folder = study / f"seed{seed}" / "models" / variant
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"scored_split": "test", **metrics}))


def test_the_run_summary_gives_scores_landings_and_files_from_what_is_on_disk(tmp_path):
    study = tmp_path / "results" / "mine"
    unseen = {"nearest_seen": "1s3x", "highest_affinity_seen": "1s3x", "match": True}
    write_metrics(study, 1, "avae", macro_f1=0.8, accuracy=0.9, unseen={"3h84": unseen})
    other = {**unseen, "nearest_seen": "1bxn"}
    write_metrics(study, 2, "avae", macro_f1=0.6, accuracy=0.7, unseen={"3h84": other})
    write_metrics(study, 1, "beta_vae", macro_f1=0.5, accuracy=0.55)  # seed 2 not written
    (study / "summary.md").write_text("x")
    (study / "seed1" / "models" / "avae" / "particles_annotated.star").write_text("x")
    lines = run_summary(study, "mine", [1, 2], ["avae", "beta_vae", "vae"], "snakemake --report r")
    assert lines == [
        "cryoavae: study mine, scored on the test split:",
        "  avae: macro-F1 0.700 ± 0.141 (accuracy 0.800 ± 0.141) over 2 seeds; "
        "unseen 3h84 → 1s3x in 1 of 2 seeds (prior agrees)",
        "  beta_vae: macro-F1 0.500 (accuracy 0.550)",
        "Open:",
        f"  {study / 'summary.md'}: every variant's metrics and figures",
        f"  {study / 'seed1/models/avae/particles_annotated.star'}: the particles with the "
        "cryoavae* columns (one per variant and seed)",
        "  snakemake --report r: every figure in one HTML page",
    ]


def test_the_run_summary_is_silent_before_an_evaluation_and_skips_a_broken_file(tmp_path):
    study = tmp_path / "results" / "mine"
    assert run_summary(study, "mine", [0], ["avae"], "r") == []  # a dry run, a partial target
    (study / "seed0" / "models" / "avae").mkdir(parents=True)
    (study / "seed0" / "models" / "avae" / "metrics.json").write_text("{half written")
    assert run_summary(study, "mine", [0], ["avae"], "r") == []


def test_a_sweep_of_many_variants_stays_short(tmp_path):
    study = tmp_path / "results" / "sweep"
    variants = [f"v{k}" for k in range(20)]
    for variant in variants:
        write_metrics(study, 0, variant, macro_f1=0.5, accuracy=0.5)
    lines = run_summary(study, "sweep", [0], variants, "r")
    assert len(lines) <= 15
    assert "  ... 12 more variants in summary.md" in lines


def test_an_identity_prior_is_reported_as_no_prior_not_as_a_miss():
    from cryoavae.evaluate.summary import summary_markdown

    unseen = {"v": {"nearest_seen": "a", "highest_affinity_seen": None, "match": None}}
    metrics = [{"accuracy": 0.5, "unseen": unseen}]
    table = summary_table(["beta_vae"], metrics, [{"epochs": 2}])
    assert list(table["unseen_matched"]) == ["–"]
    text = summary_markdown("mine", table, metrics, {})
    assert "unseen v lands nearest a; the prior ranks no seen class above another" in text
