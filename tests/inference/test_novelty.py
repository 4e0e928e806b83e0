"""The novelty model on synthetic Gaussian clusters whose answers are known by construction:
far clusters are novel, the threshold keeps the stated share of val particles, only the train
particles are fitted, and novelty.json carries the model to another process."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cryoavae.core.errors import InputError
from cryoavae.inference.novelty import SCORES, fit_novelty, seen_recall_threshold
from cryoavae.inference.novelty_json import read_novelty_json, write_novelty_json

CLASSES = ["a", "b", "c"]
# anisotropic clusters: wide along their first axis, narrow along the others
CENTRES = {"a": [4.0, 0, 0, 0], "b": [0, 4.0, 0, 0], "c": [0, 0, 4.0, 0], "far": [0, 0, 0, 9.0]}
# each class's fit to its matched template: a class the templates do not hold fits worse
FITS = {"a": 0.6, "b": 0.6, "c": 0.6, "far": 0.3, "inside": 0.3}
SCALES = np.array([1.0, 0.2, 0.2, 0.2])


def latents(counts: dict[str, dict[str, int]], seed: int = 0) -> pd.DataFrame:
    """``counts[class][split]`` particles at the class's centre, Gaussian with :data:`SCALES`
    (turned so that each class is wide along its own centre's axis), each with a fit to its
    matched template around :data:`FITS` (class ``inside`` sits where ``a`` does)."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, splits in counts.items():
        centre = np.asarray(CENTRES.get(name, CENTRES["a"]))
        axis = int(np.argmax(np.abs(centre)))
        scales = np.roll(SCALES, axis)
        for split, n in splits.items():
            mu = centre + scales * rng.normal(size=(n, 4))
            frame = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(4)])
            fit = np.clip(FITS[name] + 0.05 * rng.normal(size=n), 0, 1)
            frames.append(frame.assign(class_name=name, split=split, orientation_fit=fit))
    return pd.concat(frames, ignore_index=True)


SEEN = {c: {"train": 200, "val": 100, "test": 100} for c in CLASSES}


def auroc(model, table: pd.DataFrame, novel_split: str = "unseen", score=None) -> float:
    rows = table["split"].isin(["test", novel_split]).to_numpy()
    mu = table.loc[rows, [f"mu_{i}" for i in range(4)]].to_numpy()
    fit = table.loc[rows, "orientation_fit"].to_numpy()
    s = model.scores(mu, [score or model.score], fit)[score or model.score].to_numpy()
    return roc_auc_score(table.loc[rows, "split"] == novel_split, s)


def test_a_far_cluster_is_novel_by_every_score_and_a_flipped_score_fails():
    table = latents(SEEN | {"far": {"unseen": 100}})
    model = fit_novelty(table, CLASSES)
    assert model.score == "mahalanobis"
    for score in SCORES:
        assert auroc(model, table, score=score) > 0.99, score
    flipped = model.scores(table[[f"mu_{i}" for i in range(4)]].to_numpy())["mahalanobis"] * -1
    rows = table["split"].isin(["test", "unseen"]).to_numpy()
    assert roc_auc_score(table.loc[rows, "split"] == "unseen", flipped[rows]) < 0.01


def test_a_class_inside_a_seen_ones_region_is_found_by_its_misfit_alone():
    """Particles of a new class whose mu falls where class a's does but that fit their matched
    template worse: the Mahalanobis distance cannot tell them from a's (AUROC near 0.5),
    mahalanobis_fit can; with the misfit's sign flipped it could not."""
    table = latents(SEEN | {"inside": {"unseen": 100}})
    model = fit_novelty(table, CLASSES, score="mahalanobis_fit")
    assert 0.35 < auroc(model, table, score="mahalanobis") < 0.65
    assert auroc(model, table, score="mahalanobis_fit") > 0.95
    flipped = table.assign(orientation_fit=1.0 - table["orientation_fit"])
    assert auroc(model, flipped, score="mahalanobis_fit") < 0.5


def test_a_misfit_judged_against_its_own_class_finds_what_a_pooled_one_misses():
    """Class a's template explains its particles well (fit 0.9), c's poorly (0.3): a new class
    sitting in a's region and matched to a's template at fit 0.6 is an ordinary fit over all
    classes (mahalanobis_fit near chance), but far below a's own (mahalanobis_class_fit near
    1). Without the matched classes the class score is the pooled one; the per-class spreads
    come from the training particles alone."""
    fits = {"a": 0.9, "b": 0.6, "c": 0.3, "inside": 0.6}
    table = latents(SEEN | {"inside": {"unseen": 100}})
    rng = np.random.default_rng(1)
    names = table["class_name"].to_numpy()
    fit = np.array([fits[c] for c in names]) + 0.03 * rng.normal(size=len(table))
    table = table.assign(
        orientation_fit=fit.clip(0, 1), orientation_class=np.where(names == "inside", "a", names)
    )
    model = fit_novelty(table, CLASSES, score="mahalanobis_class_fit")
    assert sorted(model.class_misfit) == CLASSES
    assert model.class_misfit["a"][0] == pytest.approx(0.1, abs=0.01)
    assert auroc(model, table, score="mahalanobis_fit") < 0.8
    rows = table["split"].isin(["test", "unseen"]).to_numpy()
    mu = table.loc[rows, [f"mu_{i}" for i in range(4)]].to_numpy()
    fit_rows, matched = fit[rows], table.loc[rows, "orientation_class"].to_numpy()
    truth = table.loc[rows, "split"] == "unseen"
    per_class = model.scores(mu, ["mahalanobis_class_fit"], fit_rows, matched)
    assert roc_auc_score(truth, per_class["mahalanobis_class_fit"]) > 0.97
    pooled = model.scores(mu, ["mahalanobis_fit", "mahalanobis_class_fit"], fit_rows, None)
    np.testing.assert_allclose(pooled["mahalanobis_class_fit"], pooled["mahalanobis_fit"])
    unseen = table["split"] == "unseen"
    moved = table.assign(orientation_fit=np.where(unseen, 0.95, table["orientation_fit"]))
    assert fit_novelty(moved, CLASSES, score="mahalanobis_class_fit").class_misfit == (
        model.class_misfit
    )


def test_the_fit_standardisation_and_threshold_come_from_train_and_val_alone():
    """Changing the test and unseen particles' fits changes neither the standardisation (train)
    nor the threshold (val); changing the train fits does."""
    table = latents(SEEN | {"far": {"unseen": 100}})
    model = fit_novelty(table, CLASSES, score="mahalanobis_fit")
    others = table["split"].isin(["test", "unseen"])
    moved = table.assign(orientation_fit=np.where(others, 0.0, table["orientation_fit"]))
    again = fit_novelty(moved, CLASSES, score="mahalanobis_fit")
    assert again.standardisation == model.standardisation and again.threshold == model.threshold
    train = table["split"] == "train"
    changed = table.assign(orientation_fit=np.where(train, 0.9, table["orientation_fit"]))
    assert fit_novelty(changed, CLASSES, score="mahalanobis_fit").standardisation != (
        model.standardisation
    )


def test_mahalanobis_fit_without_fits_is_refused_in_one_line():
    table = latents(SEEN).drop(columns="orientation_fit")
    with pytest.raises(InputError, match="orientation_fit"):
        fit_novelty(table, CLASSES, score="mahalanobis_fit")


def test_mahalanobis_reads_each_class_covariance():
    """Two points equally far from class a's centre in Euclidean terms: along its wide axis it is
    a member, across its narrow axis it is novel (the cosine and plain distances cannot tell)."""
    model = fit_novelty(latents(SEEN), CLASSES)
    along, across = np.array([[6.5, 0, 0, 0], [4.0, 0, 0, 2.5]])
    maha = model.scores(np.stack([along, across]), ["mahalanobis"])["mahalanobis"].to_numpy()
    assert maha[0] < 3.0 < 10.0 < maha[1]
    assert maha[0] < model.threshold < maha[1]


@pytest.mark.parametrize("recall", [0.5, 0.9, 0.95, 1.0])
def test_the_threshold_keeps_the_stated_share_of_the_val_particles(recall):
    table = latents(SEEN)
    model = fit_novelty(table, CLASSES, seen_recall=recall)
    val = table.loc[table["split"] == "val", [f"mu_{i}" for i in range(4)]].to_numpy()
    kept = float((~model.is_novel(model.score_of(val))).mean())
    assert recall <= kept < recall + 1 / len(val)
    assert (model.calibration_split, model.n_calibration) == ("val", len(val))
    assert model.calibration_seen_recall == pytest.approx(kept)


def test_seen_recall_threshold_is_an_order_statistic():
    scores = np.arange(1.0, 21.0)  # 1..20
    assert seen_recall_threshold(scores, 0.95) == 19.0
    assert seen_recall_threshold(scores, 1.0) == 20.0
    assert seen_recall_threshold(scores, 0.01) == 1.0
    assert seen_recall_threshold(np.array([]), 0.95) == math.inf


def test_only_train_particles_are_fitted_and_only_val_ones_set_the_threshold():
    """Moving every val, test and unseen particle far away changes neither the Gaussians nor
    the neighbours; moving test and unseen ones leaves the threshold too."""
    table = latents(SEEN | {"far": {"unseen": 100}})
    model = fit_novelty(table, CLASSES, score="knn")
    mu = [f"mu_{i}" for i in range(4)]
    for moved_splits in (["val", "test", "unseen"], ["test", "unseen"]):
        moved = table.copy()
        rows = moved["split"].isin(moved_splits)
        moved.loc[rows, mu] = moved.loc[rows, mu].to_numpy() * 50 + 100
        refit = fit_novelty(moved, CLASSES, score="knn")
        np.testing.assert_array_equal(refit.means, model.means)
        np.testing.assert_array_equal(refit.precisions, model.precisions)
        np.testing.assert_array_equal(refit.shared_precision, model.shared_precision)
        np.testing.assert_array_equal(refit.train_mu, model.train_mu)
        assert refit.n_train == 600
        if "val" not in moved_splits:
            assert refit.threshold == model.threshold
        else:
            assert refit.threshold > 10 * model.threshold


def test_without_val_particles_the_threshold_is_set_on_train_and_says_so(caplog):
    table = latents({c: {"train": 50} for c in CLASSES})
    model = fit_novelty(table, CLASSES)
    assert model.calibration_split == "train" and model.n_calibration == 150
    assert "no val particles" in caplog.text


def test_novelty_json_carries_the_model_and_refuses_other_training_particles(tmp_path):
    table = latents(SEEN | {"far": {"unseen": 50}})
    model = fit_novelty(table, CLASSES, score="knn", seen_recall=0.9, neighbors=3)
    path = tmp_path / "models" / "avae" / "novelty.json"
    write_novelty_json(path, model)
    assert not list(path.parent.glob(".*"))  # written through a temporary, renamed
    data = json.loads(path.read_text())
    assert data["score"] == "knn" and data["seen_recall"] == 0.9 and data["n_train"] == 600
    back = read_novelty_json(path, table)
    mu = table[[f"mu_{i}" for i in range(4)]].to_numpy()
    pd.testing.assert_frame_equal(back.scores(mu), model.scores(mu))
    assert back.threshold == model.threshold
    matched = table.assign(orientation_class=table["class_name"])
    fitted = fit_novelty(matched, CLASSES, score="mahalanobis_class_fit")
    write_novelty_json(path, fitted)
    again = read_novelty_json(path, table)
    assert again.class_misfit == fitted.class_misfit and len(again.class_misfit) == 3
    fit, names = table["orientation_fit"].to_numpy(), table["class_name"].to_numpy()
    np.testing.assert_array_equal(again.score_of(mu, fit, names), fitted.score_of(mu, fit, names))
    other = latents(SEEN, seed=1)
    with pytest.raises(InputError, match="other training particles"):
        read_novelty_json(path, other)
    with pytest.raises(InputError, match="novelty model not found"):
        read_novelty_json(tmp_path / "missing.json", table)


def test_bad_settings_are_refused():
    table = latents(SEEN)
    with pytest.raises(InputError, match="score"):
        fit_novelty(table, CLASSES, score="energy")
    with pytest.raises(InputError, match="seen_recall"):
        fit_novelty(table, CLASSES, seen_recall=0.0)
    with pytest.raises(InputError, match="no training particles"):
        fit_novelty(table[table["split"] != "train"], CLASSES)
