"""The seeds' aggregate (cryoavae.evaluate.seeds): mean and sample sd per metric, computed from
each seed's metrics.json, with per-class fractions, and missing values left out, not zeroed."""

import math

import numpy as np
import pandas as pd
import pytest

from cryoavae.evaluate.seeds import seed_summary_markdown, seed_summary_table


def run(accuracy, auroc, within20=None, per_class=None):
    metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.01, "novelty_auroc": auroc}
    metrics["assigned_accuracy"] = accuracy - 0.1
    if within20 is not None:
        metrics["pose_within_20deg"] = within20
        metrics["pose_within_20deg_per_class"] = per_class
    return metrics


def test_mean_and_sample_sd_over_seeds_per_variant_and_class():
    metrics = {
        ("avae", 1): run(0.80, 0.70, 0.5, {"a": 0.9, "b": 0.1}),
        ("avae", 2): run(0.90, None, 0.7, {"a": 0.7, "b": 0.3}),
        ("avae", 3): run(0.70, 0.60, 0.6, {"a": 0.8, "b": 0.2}),
        ("beta_vae", 1): run(0.50, 0.55),
        ("beta_vae", 2): run(0.60, 0.65),
        ("beta_vae", 3): run(0.55, 0.60),
    }
    table = seed_summary_table(["avae", "beta_vae"], [1, 2, 3], metrics).set_index("variant")
    assert table.loc["avae", "accuracy_mean"] == pytest.approx(0.8)
    assert table.loc["avae", "accuracy_sd"] == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))
    # a seed without the number is left out, not counted as 0
    assert table.loc["avae", "novelty_auroc_mean"] == pytest.approx(0.65)
    assert table.loc["avae", "within_20deg:b_mean"] == pytest.approx(0.2)
    assert table.loc["avae", "within_20deg:b_sd"] == pytest.approx(0.1)
    assert math.isnan(table.loc["beta_vae", "pose_within_20deg_mean"])
    assert (table["n_seeds"] == 3).all()

    text = seed_summary_markdown("s", table.reset_index(), [1, 2, 3], "test", "snakemake -c2")
    assert "mean ± sd over seeds 1, 2, 3, scored on the test split" in text
    assert "`snakemake -c2`" in text
    assert "| avae | 0.800 ± 0.100 |" in text
    assert "| beta_vae | 0.550 ± 0.050 |" in text
    assert "| avae | 0.80 ± 0.10 | 0.20 ± 0.10 |" in text  # the per-class table
    assert "within 20° of the truth" in text and "not with a known truth" not in text
    star = "the STAR file's angles"
    users = seed_summary_markdown("s", table.reset_index(), [1], "test", "x", angles_from=star)
    assert "within 20° of the STAR file's angles" in users and "of the truth" not in users
    assert "compare the model's pose with the STAR file's angles, not with a known truth" in users


def test_one_seed_has_no_sd_and_says_so_by_omission():
    table = seed_summary_table(["avae"], [42], {("avae", 42): run(0.75, 0.6)})
    assert math.isnan(table.loc[0, "accuracy_sd"])
    text = seed_summary_markdown("s", table, [42], "val", "snakemake")
    assert "| avae | 0.750 | 0.740 | 0.650 | 0.600 |" in text and "±" not in text
    assert "*class written*: how often the class written" in text
    assert "**Study `s`**, seed 42, scored on the val split" in text


def test_the_class_averages_resolution_ratio_per_class_over_seeds():
    """From each seed's class_averages.tsv: the predicted-class average's resolution over the
    true-pose one's, mean ± sd per class; a seed without the columns (no orientations) is
    missing, and a study without any has no such table."""

    def averages(a_predicted, b_predicted):
        return pd.DataFrame(
            {
                "class_name": ["a", "b"],
                "predicted_fsc5_vs_map_angstrom": [a_predicted, b_predicted],
                "true_fsc5_vs_map_angstrom": [30.0, 40.0],
            }
        )

    metrics = {("avae", s): run(0.8, 0.7) for s in (1, 2, 3)}
    tables = {
        ("avae", 1): averages(30.0, 80.0),
        ("avae", 2): averages(33.0, 100.0),
        ("avae", 3): pd.DataFrame({"class_name": ["a", "b"]}),  # no orientations
    }
    table = seed_summary_table(["avae"], [1, 2, 3], metrics, tables)
    assert table.loc[0, "average_ratio:a_mean"] == pytest.approx(1.05)
    assert table.loc[0, "average_ratio:b_mean"] == pytest.approx(2.25)
    assert table.loc[0, "average_ratio:b_sd"] == pytest.approx(np.std([2.0, 2.5], ddof=1))
    text = seed_summary_markdown("s", table, [1, 2, 3], "test", "snakemake")
    assert "| avae | 1.05 ± 0.07 | 2.25 ± 0.35 |" in text
    plain = seed_summary_table(["avae"], [1, 2, 3], metrics)
    assert "resolution" not in seed_summary_markdown("s", plain, [1, 2, 3], "test", "x")


def test_an_average_that_never_reaches_fsc_half_is_counted_as_failed_not_left_out():
    metrics = {("avae", s): run(0.8, 0.7) for s in (1, 2)}
    tables = {
        ("avae", s): pd.DataFrame(
            {
                "class_name": ["a"],
                "predicted_fsc5_vs_map_angstrom": [predicted],
                "true_fsc5_vs_map_angstrom": [30.0],
            }
        )
        for s, predicted in ((1, 33.0), (2, float("inf")))
    }
    table = seed_summary_table(["avae"], [1, 2], metrics, tables)
    text = seed_summary_markdown("s", table, [1, 2], "test", "snakemake")
    assert "| avae | 1.10; failed in 1 |" in text


def test_the_fsc_area_ratio_per_class_counts_the_seeds_below_the_pass_line():
    """The area ratio (predicted over true-pose) per class over seeds, and a seed whose ratio
    falls below the pass line counted as failed even though the resolutions both sit at
    Nyquist (the resolution ratio 1.00 there)."""
    from cryoavae.evaluate.seeds import AREA_RATIO_PASS

    def averages(area):
        return pd.DataFrame(
            {
                "class_name": ["a"],
                "predicted_fsc5_vs_map_angstrom": [20.0],
                "true_fsc5_vs_map_angstrom": [20.0],
                "predicted_fsc_area_vs_map": [area],
                "true_fsc_area_vs_map": [0.6],
            }
        )

    metrics = {("avae", s): run(0.8, 0.7) for s in (1, 2, 3)}
    areas = (0.6, 0.57, 0.6 * (AREA_RATIO_PASS - 0.1))
    tables = {("avae", s): averages(area) for s, area in zip((1, 2, 3), areas, strict=True)}
    table = seed_summary_table(["avae"], [1, 2, 3], metrics, tables)
    ratios = [area / 0.6 for area in areas]
    assert table.loc[0, "average_area:a_mean"] == pytest.approx(np.mean(ratios))
    assert table.loc[0, "average_area:a_failed"] == 1
    assert table.loc[0, "average_ratio:a_failed"] == 0
    text = seed_summary_markdown("s", table, [1, 2, 3], "test", "snakemake")
    assert "| avae | 1.00 ± 0.00 |" in text  # the resolutions saw nothing
    assert f"| avae | {np.mean(ratios):.2f} ± {np.std(ratios, ddof=1):.2f}; failed in 1 |" in text


def test_a_decoded_class_mean_at_or_below_its_radial_blob_is_counted_as_failed():
    """The decoded mean's correlation with its map less the radial blob's, per class over seeds;
    a seed where the blob fits as well (or better) fails, shown beside the mean."""

    def averages(decoded):
        return pd.DataFrame(
            {"class_name": ["a"], "decoded_vs_map_cc": [decoded], "radial_blob_vs_map_cc": [0.9]}
        )

    metrics = {("avae", s): run(0.8, 0.7) for s in (1, 2, 3)}
    decoded = (0.95, 0.93, 0.88)
    tables = {("avae", s): averages(d) for s, d in zip((1, 2, 3), decoded, strict=True)}
    table = seed_summary_table(["avae"], [1, 2, 3], metrics, tables)
    margins = [d - 0.9 for d in decoded]
    assert table.loc[0, "decoded_margin:a_mean"] == pytest.approx(np.mean(margins))
    assert table.loc[0, "decoded_margin:a_failed"] == 1
    text = seed_summary_markdown("s", table, [1, 2, 3], "test", "snakemake")
    sd = np.std(margins, ddof=1)
    assert f"| avae | {np.mean(margins):.3f} ± {sd:.3f}; failed in 1 |" in text
    assert "radial blob" in text
