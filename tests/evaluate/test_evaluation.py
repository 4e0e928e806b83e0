"""Metrics of cryoavae.evaluate on synthetic latents whose answers are known by construction.

UMAP runs for real on a few hundred points: the first call in a process pays umap-learn's numba
compile (about 10 s on a small CPU); later calls take a fraction of a second.
"""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from cryoavae.core.errors import InputError
from cryoavae.evaluate import (
    EvaluationConfig,
    evaluate_latents,
    write_confusion_csv,
    write_metrics_json,
)
from cryoavae.evaluate.pose_correlation import _circular_correlation
from cryoavae.inference.novelty import FIT_SCORES, SCORES

CONFIG = EvaluationConfig()


def evaluate(latents, classes, affinity, ndim=2, config=CONFIG, umap=False):
    """evaluate_latents with seed 0; UMAP only where a test looks at it (it is the slow part)."""
    return evaluate_latents(latents, classes, affinity, config, seed=0, ndim=ndim, embed_umap=umap)


def make_latents(
    centres: dict[str, np.ndarray],
    splits: dict[str, dict[str, int]],
    seed: int = 0,
    noise: float = 0.05,
    ndim: int = 2,
    pose=None,
) -> pd.DataFrame:
    """Latents table: class ``c`` has ``splits[c][split]`` particles at ``centres[c]`` + noise.

    Angles: 2-D in-plane angles uniform in [-90, 90); 3-D uniform random rotations.
    ``pose(class_name, angles_deg (n, 3), rng) -> (n, p)`` makes the pose columns (default none).
    """
    rng = np.random.default_rng(seed)
    frames = []
    for c, counts in splits.items():
        for split, n in counts.items():
            if ndim == 2:
                angles = np.zeros((n, 3))
                angles[:, 2] = rng.uniform(-90, 90, n)
            else:
                angles = Rotation.random(n, random_state=int(rng.integers(2**31))).as_euler(
                    "ZYZ", degrees=True
                )
            mu = centres[c] + noise * rng.normal(size=(n, len(centres[c])))
            frame = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(mu.shape[1])])
            if pose is not None:
                p = pose(c, angles, rng)
                for i in range(p.shape[1]):
                    frame[f"pose_{i}"] = p[:, i]
            frame["class_name"] = c
            frame["split"] = split
            frame["angle_rot"], frame["angle_tilt"], frame["angle_psi"] = angles.T
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["image"] = [f"{i + 1:06d}@shard_0.mrcs" for i in range(len(table))]
    return table


def seen_split(train: int = 60, val: int = 20) -> dict[str, int]:
    return {"train": train, "val": val}


def axes_centres(classes, dim: int) -> dict[str, np.ndarray]:
    """Class ``i`` on the ``i``-th coordinate axis: orthogonal directions, cosine 0 between."""
    return {c: 3.0 * np.eye(dim)[i] for i, c in enumerate(classes)}


@pytest.fixture(scope="module")
def separated():
    """Four well-separated seen classes and one unseen class placed at class 'b'."""
    classes = ["a", "b", "c", "d", "u"]
    centres = axes_centres(classes[:4], 6)
    centres["u"] = centres["b"]
    splits = {c: seen_split() for c in classes[:4]} | {"u": {"unseen": 40}}
    latents = make_latents(centres, splits)
    affinity = np.eye(5)
    affinity[4, 1] = affinity[1, 4] = 0.9  # 'u' resembles 'b' most under the prior
    affinity[4, 2] = affinity[2, 4] = 0.5
    return latents, classes, affinity, evaluate(latents, classes, affinity, umap=True)


@pytest.mark.parametrize("classifier", ["logistic_regression", "knn", "mlp"])
def test_separated_clusters_are_classified_perfectly(classifier):
    classes = ["a", "b", "c"]
    latents = make_latents(axes_centres(classes, 4), {c: seen_split() for c in classes})
    config = EvaluationConfig(classifier=classifier, knn_neighbors=3)
    m = evaluate(latents, classes, np.eye(3), config=config).metrics
    assert m["classifier"] == classifier
    assert m["accuracy"] == 1.0
    assert m["macro_f1"] == 1.0
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 20}


def test_scores_come_from_the_test_split_when_there_is_one():
    """Val particles scrambled across classes, test particles clean: a score computed on val would
    be near chance; the metrics come from test and say so."""
    classes = ["a", "b", "c"]
    splits = {c: {"train": 60, "val": 20, "test": 25} for c in classes}
    latents = make_latents(axes_centres(classes, 4), splits)
    val = (latents["split"] == "val").to_numpy()
    scrambled = np.random.default_rng(1).permutation(np.flatnonzero(val))
    mu = [f"mu_{i}" for i in range(4)]
    latents.loc[val, mu] = latents.loc[scrambled, mu].to_numpy()
    latents.loc[val, "class_name"] = np.resize(classes, int(val.sum()))
    m = evaluate(latents, classes, np.eye(3)).metrics
    assert m["scored_split"] == "test"
    assert (m["n_train"], m["n_val"], m["n_test"]) == (180, 60, 75)
    assert m["accuracy"] == 1.0 and m["per_class"]["a"]["support"] == 25
    without_test = evaluate(latents[latents["split"] != "test"], classes, np.eye(3)).metrics
    assert without_test["scored_split"] == "val" and without_test["accuracy"] < 0.6


def test_seen_class_without_val_particles_does_not_lower_macro_f1():
    classes = ["a", "b", "c"]
    splits = {"a": seen_split(), "b": seen_split(), "c": {"train": 30}}
    m = evaluate(make_latents(axes_centres(classes, 3), splits), classes, np.eye(3)).metrics
    assert m["macro_f1"] == 1.0
    assert m["per_class"]["c"]["support"] == 0


def test_the_class_written_is_scored_as_the_annotated_tables_assign_it():
    """The latent classifier and the class the STAR file gets are scored apart: with no matched
    class the nearest centroid (right for separated classes), with one, that class, here wrong
    for every test particle of class a (val particles, where choices are made, are not scored)."""
    classes = ["a", "b", "c"]
    splits = {c: {"train": 60, "val": 20, "test": 25} for c in classes}
    latents = make_latents(axes_centres(classes, 4), splits)
    plain = evaluate(latents, classes, np.eye(3)).metrics
    assert plain["assigned_by"] == "centroid" and plain["assigned_accuracy"] == 1.0
    latents["orientation_class"] = latents["class_name"]
    wrong = (latents["class_name"] == "a") & latents["split"].isin(["test", "val"])
    latents.loc[wrong, "orientation_class"] = "b"
    matched = evaluate(latents, classes, np.eye(3)).metrics
    assert matched["assigned_by"] == "template"
    assert matched["assigned_accuracy"] == pytest.approx(50 / 75)
    assert matched["assigned_macro_f1"] < 0.7
    assert matched["accuracy"] == 1.0  # the classifier on mu is untouched


def test_separated_clusters_have_silhouette_near_one(separated):
    _, _, _, result = separated
    assert result.metrics["silhouette"] > 0.95
    assert np.array_equal(result.confusion_counts, 20 * np.eye(4, dtype=int))
    assert result.seen_classes == ("a", "b", "c", "d")
    assert result.unseen_classes == ("u",)
    m = result.metrics
    assert (m["n_train"], m["n_val"], m["n_unseen"], m["latent_dim"]) == (240, 80, 40, 6)


def test_overlapping_clusters_score_lower():
    classes = ["a", "b", "c"]
    centres = {c: np.full(4, 1.0) for c in classes}  # one cloud for all three classes
    latents = make_latents(centres, {c: seen_split() for c in classes}, noise=1.0)
    m = evaluate_latents(
        latents, classes, np.eye(3), CONFIG, seed=0, ndim=2, embed_umap=False
    ).metrics
    assert m["accuracy"] < 0.7
    assert abs(m["silhouette"]) < 0.1


def test_unseen_class_placed_at_a_seen_class_is_reported_near_it(separated):
    _, _, _, result = separated
    report = result.metrics["unseen"]["u"]
    assert report["nearest_seen"] == "b"
    assert report["highest_affinity_seen"] == "b"
    assert report["match"] is True
    assert report["affinity_rank_of_nearest"] == 1
    assert report["nearest_seen_cosine"] > 0.99
    assert result.metrics["unseen_match_fraction"] == 1.0


def test_unseen_class_that_disagrees_with_the_prior_is_not_a_match(separated):
    latents, classes, affinity, _ = separated
    swapped = affinity.copy()
    swapped[4, 1] = swapped[1, 4] = 0.3  # now 'c' (0.5) is the prior's favourite, 'b' second
    report = evaluate(latents, classes, swapped).metrics["unseen"]["u"]
    assert report["nearest_seen"] == "b"
    assert report["highest_affinity_seen"] == "c"
    assert report["match"] is False
    assert report["affinity_rank_of_nearest"] == 2


def test_an_identity_prior_ranks_no_seen_class_for_the_unseen(separated):
    """affinity.source uniform/none: the identity says nothing of where an unseen class
    belongs, so it never counts as a match (an argmax over equal values would always agree)."""
    latents, classes, affinity, _ = separated
    m = evaluate(latents, classes, np.eye(len(affinity))).metrics
    report = m["unseen"]["u"]
    assert report["nearest_seen"] == "b"
    assert report["highest_affinity_seen"] is None and report["match"] is None
    assert report["affinity_rank_of_nearest"] is None
    assert m["unseen_match_fraction"] is None


def test_novelty_auroc_is_one_for_distinct_and_half_for_identical_distributions(separated):
    _, _, _, result = separated
    # Unseen points sit exactly on 'b' so they are no more novel than val particles: ~0.5.
    assert abs(result.metrics["novelty_auroc"] - 0.5) < 0.15
    classes = ["a", "b", "u"]
    centres = axes_centres(classes, 3)
    splits = {"a": seen_split(), "b": seen_split(), "u": {"unseen": 40}}
    far = evaluate_latents(
        make_latents(centres, splits), classes, np.eye(3), CONFIG, 0, 2, embed_umap=False
    )
    assert far.metrics["novelty_auroc"] == 1.0


def test_novelty_auroc_about_half_when_unseen_is_drawn_like_seen():
    """Unseen particles drawn from the same mixture as the seen val particles."""
    classes = ["a", "b", "u"]
    centres = axes_centres(classes[:2], 3)
    latents = make_latents(centres, {"a": seen_split(100, 150), "b": seen_split(100, 150)})
    unseen = make_latents(centres, {"a": {"val": 100}, "b": {"val": 100}}, seed=1)
    unseen["split"], unseen["class_name"] = "unseen", "u"
    table = pd.concat([latents, unseen], ignore_index=True)
    m = evaluate_latents(
        table, classes, np.eye(3), CONFIG, seed=0, ndim=2, embed_umap=False
    ).metrics
    assert abs(m["novelty_auroc"] - 0.5) < 0.1
    assert m["unseen"]["u"]["nearest_seen"] in {"a", "b"}


def test_no_unseen_classes_gives_null_open_set_metrics():
    classes = ["a", "b"]
    latents = make_latents(axes_centres(classes, 3), {c: seen_split() for c in classes})
    m = evaluate_latents(
        latents, classes, np.eye(2), CONFIG, seed=0, ndim=2, embed_umap=False
    ).metrics
    assert m["unseen"] == {}
    assert m["novelty_auroc"] is None
    assert m["unseen_match_fraction"] is None


def test_novelty_metrics_give_every_score_the_threshold_and_what_it_flags():
    classes = ["a", "b", "u"]
    splits = {c: {"train": 60, "val": 100, "test": 100} for c in classes[:2]}
    latents = make_latents(axes_centres(classes, 4), splits | {"u": {"unseen": 40}})
    m = evaluate(latents, classes, np.eye(3)).metrics
    without_fits = set(SCORES) - set(FIT_SCORES)  # no orientation step: no fits
    assert m["novelty_score"] == "mahalanobis"
    assert set(m["novelty_auroc_per_score"]) == without_fits
    assert m["novelty_auroc"] == m["novelty_auroc_per_score"]["mahalanobis"] == 1.0
    assert m["novelty_calibration_split"] == "val" and m["novelty_seen_recall_target"] == 0.95
    assert m["novelty_threshold"] > 0 and m["novelty_unseen_recall"] == 1.0
    assert 0.85 <= m["novelty_seen_recall"] <= 1.0  # test particles at the threshold set on val
    assert m["n_junk"] == 0 and m["novelty_junk_auroc"] is None
    assert m["novelty_junk_recall"] is None and m["novelty_junk_auroc_per_score"] is None
    knn = evaluate(latents, classes, np.eye(3), config=EvaluationConfig(novelty_score="knn"))
    assert knn.metrics["novelty_score"] == "knn" and knn.novelty_model.score == "knn"


def test_junk_is_scored_apart_from_the_unseen_classes():
    """Unseen class u lies on seen class b (no score can tell them: AUROC about 0.5); the
    extraction's false positives (class background, split unseen, not a study class) lie apart
    and are found; they count in no unseen-class metric."""
    classes = ["a", "b", "u"]
    centres = axes_centres(classes[:2], 4) | {"background": 3.0 * np.eye(4)[3]}
    centres["u"] = centres["b"]
    splits = {c: seen_split(80, 100) for c in classes[:2]}
    splits |= {"u": {"unseen": 200}, "background": {"unseen": 30}}
    result = evaluate(make_latents(centres, splits), classes, np.eye(3))
    m = result.metrics
    assert abs(m["novelty_auroc"] - 0.5) < 0.1
    assert m["novelty_junk_auroc"] == 1.0 and m["novelty_junk_recall"] == 1.0
    assert m["novelty_junk_auroc_per_score"]["mahalanobis"] == 1.0
    assert (m["n_junk"], m["n_unseen"]) == (30, 200) and set(m["unseen"]) == {"u"}
    junk = result.novelty[result.novelty["class_name"] == "background"]
    assert len(junk) == 30 and junk["is_novel"].all()


def pose_2d(kind):
    def make(c, angles, rng):
        psi = angles[:, 2]
        if kind == "angle":  # pose_0 is noise, pose_1 the angle (negated for class 'b')
            sign = -1.0 if c == "b" else 1.0
            return np.stack([rng.normal(size=len(psi)), sign * psi / 90.0], 1)
        if kind == "circle":
            return np.stack([np.cos(np.radians(psi)), np.sin(np.radians(psi))], 1)
        return rng.normal(size=(len(psi), 1))

    return make


def test_pose_equal_to_the_angle_has_correlation_one():
    classes = ["a", "b", "c"]
    latents = make_latents(
        axes_centres(classes, 4), {c: seen_split() for c in classes}, pose=pose_2d("angle")
    )
    result = evaluate_latents(latents, classes, np.eye(3), CONFIG, seed=0, ndim=2, embed_umap=False)
    m = result.metrics
    assert m["pose_correlation"] == pytest.approx(1.0)
    assert m["pose_correlation_per_class"] == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})
    assert set(m["pose_predictor_per_class"].values()) == {"pose_1"}
    assert m["pose_angle_median_error_deg"] < 1e-6
    assert set(result.pose_table["class_name"]) == set(classes)
    assert "angle_psi" in m["pose_metric_description"]


def test_circular_pose_over_a_full_turn_recovers_the_angle():
    classes = ["a", "b"]
    latents = make_latents(
        axes_centres(classes, 3), {c: seen_split() for c in classes}, pose=pose_2d("circle")
    )
    latents["angle_psi"] = (latents["angle_psi"] * 2.0 + 360.0) % 360.0 - 180.0  # full turn
    psi = np.radians(latents["angle_psi"])
    latents["pose_0"], latents["pose_1"] = np.cos(psi), np.sin(psi)
    m = evaluate_latents(
        latents, classes, np.eye(2), CONFIG, seed=0, ndim=2, embed_umap=False
    ).metrics
    assert m["pose_correlation"] == pytest.approx(1.0)
    assert m["pose_predictor_per_class"]["a"] == "atan2(pose_1, pose_0)"
    assert m["pose_angle_median_error_deg"] < 1e-6


def test_circular_score_is_stable_over_a_full_turn_with_a_few_flipped_particles():
    """2 of 100 particles flipped by 180 deg: the score stays near its noise-free 0.92 for every
    draw (a coefficient that subtracts the mean direction scattered from -0.39 to 0.99 here)."""
    scores = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        true = rng.uniform(-180, 180, 100)
        inferred = true + 40.0 + rng.normal(0, 2, 100)
        inferred[:2] += 180.0
        scores.append(float(_circular_correlation(inferred[:, None], true)[0]))
        # The O(n) sums equal the definition over all pairs.
        a, b = np.radians(inferred), np.radians(true)
        da, db = np.sin(a[:, None] - a[None]), np.sin(b[:, None] - b[None])
        pairwise = (da * db).sum() / np.sqrt((da**2).sum() * (db**2).sum())
        assert scores[-1] == pytest.approx(pairwise, abs=1e-9)
    assert min(scores) > 0.88 and max(scores) < 0.96
    assert float(_circular_correlation(-true[:, None], true)[0]) == pytest.approx(-1.0)
    unrelated = np.random.default_rng(9).uniform(-180, 180, 100)
    assert abs(float(_circular_correlation(unrelated[:, None], true)[0])) < 0.2


def test_random_pose_has_low_correlation_and_large_error():
    classes = ["a", "b"]
    latents = make_latents(
        axes_centres(classes, 3), {c: seen_split(100, 100) for c in classes}, pose=pose_2d("noise")
    )
    m = evaluate_latents(
        latents, classes, np.eye(2), CONFIG, seed=0, ndim=2, embed_umap=False
    ).metrics
    assert m["pose_correlation"] < 0.3
    assert m["pose_angle_median_error_deg"] > 25.0  # uniform in +-90 deg: 45 deg by chance


def test_3d_pose_that_encodes_the_rotation_is_recovered():
    mixing = np.random.default_rng(5).normal(size=(4, 4))  # quaternion seen through a linear map

    def pose(c, angles, rng):
        q = Rotation.from_euler("ZYZ", angles, degrees=True).as_quat()
        return q @ mixing if c == "a" else rng.normal(size=(len(q), 4))

    classes = ["a", "b"]
    latents = make_latents(
        axes_centres(classes, 3), {c: seen_split(200, 60) for c in classes}, ndim=3, pose=pose
    )
    result = evaluate_latents(latents, classes, np.eye(2), CONFIG, seed=0, ndim=3, embed_umap=False)
    per_class = result.metrics["pose_correlation_per_class"]
    assert per_class["a"] > 0.99
    assert abs(per_class["b"]) < 0.2
    errors = result.pose_table.groupby("class_name")["error_deg"].median()
    assert errors["a"] < 3.0
    assert errors["b"] > 100.0  # no information: about 132 deg
    assert "rotation" in result.metrics["pose_metric_description"]


def test_3d_pose_score_is_zero_for_a_pose_without_information_in_a_limited_range():
    """Orientations within 20 degrees of the map's: every rotation matrix is close to the
    identity, so uncentred entries would correlate with any prediction of the mean orientation.
    A pose of noise must still score about 0, and a pose holding the rotation about 1."""
    rng = np.random.default_rng(4)

    def limited(n):
        axes = rng.normal(size=(n, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        return Rotation.from_rotvec(axes * np.radians(rng.uniform(0, 20, n))[:, None])

    def pose(c, angles, _):
        q = Rotation.from_euler("ZYZ", angles, degrees=True).as_quat()
        return q if c == "a" else rng.normal(size=(len(q), 4))

    classes = ["a", "b"]
    latents = make_latents(
        axes_centres(classes, 3), {c: seen_split(200, 60) for c in classes}, ndim=3
    )
    angles = limited(len(latents)).as_euler("ZYZ", degrees=True)
    latents[["angle_rot", "angle_tilt", "angle_psi"]] = angles
    for c in classes:
        rows = (latents["class_name"] == c).to_numpy()
        p = pose(c, angles[rows], None)
        for i in range(4):
            latents.loc[rows, f"pose_{i}"] = p[:, i]
    per_class = evaluate_latents(
        latents, classes, np.eye(2), CONFIG, seed=0, ndim=3, embed_umap=False
    ).metrics["pose_correlation_per_class"]
    assert per_class["a"] > 0.95
    assert abs(per_class["b"]) < 0.2


def test_without_pose_dimensions_pose_metrics_are_null():
    classes = ["a", "b"]
    latents = make_latents(axes_centres(classes, 3), {c: seen_split() for c in classes})
    result = evaluate_latents(latents, classes, np.eye(2), CONFIG, seed=0, ndim=2, embed_umap=False)
    assert result.metrics["pose_correlation"] is None
    assert result.metrics["pose_dim"] == 0
    assert result.pose_table is None


def test_latent_structure_matching_the_prior_correlates_with_it():
    # Class directions whose Gram matrix is a chosen PSD affinity (Cholesky factor rows).
    affinity = np.array(
        [[1.0, 0.8, 0.3, 0.0], [0.8, 1.0, 0.5, 0.2], [0.3, 0.5, 1.0, 0.6], [0.0, 0.2, 0.6, 1.0]]
    )
    directions = np.linalg.cholesky(affinity)
    classes = ["a", "b", "c", "d"]
    centres = {c: 5.0 * directions[i] for i, c in enumerate(classes)}
    latents = make_latents(centres, {c: seen_split() for c in classes}, noise=0.01)
    result = evaluate(latents, classes, affinity)
    m = result.metrics
    assert m["prior_correlation"] > 0.99
    assert m["prior_correlation_spearman"] == pytest.approx(1.0)
    assert m["prior_mean_abs_error"] < 0.01
    assert np.allclose(result.class_cosine.to_numpy(), affinity, atol=0.01)
    assert np.array_equal(result.class_affinity.to_numpy(), affinity)


def test_same_seed_gives_same_result_and_umap_separates_classes(separated):
    latents, classes, affinity, first = separated
    again = evaluate(latents, classes, affinity, umap=True)
    assert np.array_equal(first.umap_xy, again.umap_xy)
    assert json.dumps(first.metrics) == json.dumps(again.metrics)
    xy, names = first.umap_xy, first.umap_class
    centroids = np.stack([xy[names == c].mean(0) for c in "abcd"])
    spread = max(
        np.linalg.norm(xy[names == c] - centroids[i], axis=1).mean() for i, c in enumerate("abcd")
    )
    gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)[np.triu_indices(4, 1)]
    assert gaps.min() > 2 * spread
    assert first.umap_xy.shape == (len(latents), 2)


def test_novelty_table_covers_val_and_unseen(separated):
    latents, _, _, result = separated
    novelty = result.novelty
    assert len(novelty) == (latents["split"] != "train").sum()
    assert set(novelty["split"]) == {"val", "unseen"}
    assert (novelty.loc[novelty["class_name"] == "u", "nearest_seen"] == "b").all()
    assert novelty["image"].str.contains("@").all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classifier": "svm"}, "evaluation.classifier"),
        ({"knn_neighbors": 0}, "evaluation.knn_neighbors"),
        ({"umap_min_dist": 2.0}, "evaluation.umap_min_dist"),
        ({"umap_n_neighbors": 1}, "evaluation.umap_n_neighbors"),
        ({"novelty_seen_recall": 0.0}, "evaluation.novelty_seen_recall"),
        ({"novelty_score": "energy"}, "evaluation.novelty_score"),
    ],
)
def test_bad_config_is_rejected_with_the_key(kwargs, message):
    with pytest.raises(InputError, match=message):
        EvaluationConfig(**kwargs)


def test_bad_latents_are_rejected(separated):
    latents, classes, affinity, _ = separated
    with pytest.raises(InputError, match="not in the study's classes"):
        evaluate(latents, classes[:4], affinity[:4, :4])
    with pytest.raises(InputError, match="affinity: shape"):
        evaluate(latents, classes, affinity[:4, :4])
    with pytest.raises(InputError, match="missing columns"):
        evaluate_latents(
            latents.drop(columns="split"), classes, affinity, CONFIG, 0, 2, embed_umap=False
        )
    only_train = latents[latents["split"] == "train"]
    with pytest.raises(InputError, match="no test or val particles"):
        evaluate(only_train, classes, affinity)
    odd = latents.copy()
    odd.loc[0, "split"] = "holdout"
    with pytest.raises(InputError, match="split"):
        evaluate(odd, classes, affinity)


def test_metrics_json_is_strict_json(tmp_path, separated):
    _, _, _, result = separated
    path = tmp_path / "m" / "metrics.json"
    write_metrics_json(path, {**result.metrics, "nan": float("nan"), "n": np.int64(3)})
    loaded = json.loads(path.read_text())  # would fail on NaN tokens only if allow_nan=False
    assert loaded["nan"] is None and loaded["n"] == 3
    assert loaded["unseen"]["u"]["nearest_seen"] == "b"
    for key in (
        "accuracy",
        "macro_f1",
        "per_class",
        "silhouette",
        "pose_correlation",
        "prior_correlation",
        "unseen",
        "novelty_auroc",
        "novelty_auroc_per_score",
        "novelty_threshold",
        "novelty_unseen_recall",
        "novelty_seen_recall",
        "novelty_junk_auroc",
        "novelty_junk_recall",
        "n_train",
        "n_val",
        "n_unseen",
    ):
        assert key in loaded
    assert not list(tmp_path.glob("m/.*"))  # no temporary left behind


def test_confusion_csv_holds_counts_and_row_fractions(tmp_path, separated):
    _, _, _, result = separated
    path = tmp_path / "confusion_matrix.csv"
    write_confusion_csv(path, result)
    table = pd.read_csv(path)
    counts = table.pivot(index="true_class", columns="predicted_class", values="count")
    assert np.array_equal(
        counts.loc[list("abcd"), list("abcd")].to_numpy(), result.confusion_counts
    )
    fractions = table.groupby("true_class")["fraction_of_true"].sum()
    assert np.allclose(fractions, 1.0)


def test_umap_of_a_large_study_is_fitted_on_a_draw_and_places_the_rest_by_neighbours():
    from cryoavae.evaluate.projection import umap_projection

    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 3
    labels = np.arange(900) % 3
    mu = centres[labels] + 0.3 * rng.standard_normal((900, 4))
    xy = umap_projection(mu, 15, 0.1, seed=0, max_points=300)
    assert xy.shape == (900, 2) and np.isfinite(xy).all()
    means = np.stack([xy[labels == c].mean(0) for c in range(3)])
    nearest = np.argmin(((xy[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.95  # placed particles sit with their class
    again = umap_projection(mu, 15, 0.1, seed=0, max_points=300)
    np.testing.assert_array_equal(again, xy)
