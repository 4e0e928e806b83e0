"""The latent space read off a latents table (cryoavae.inference.latents): reading the table,
its mu/pose columns, class cosines and centroid directions, and the nearest class."""

import numpy as np
import pandas as pd
import pytest

from cryoavae.core.errors import InputError
from cryoavae.inference.latents import (
    MATCHED_CLASS,
    assign_nearest_class,
    class_centroids,
    class_cosine_matrix,
    latent_columns,
    matched_classes,
    place_by_neighbours,
    read_latents,
)


def test_class_cosine_matrix_is_mean_pairwise_cosine():
    mu = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    names = np.array(["a", "a", "b"])
    cos = class_cosine_matrix(mu, names, ["a", "b", "empty"])
    # a-b pairs: cos = 1 and 0 -> 0.5; a-a pairs (with self-pairs): (1 + 0 + 0 + 1) / 4
    assert cos[0, 1] == pytest.approx(0.5)
    assert cos[0, 0] == pytest.approx(0.5)
    assert cos[1, 1] == pytest.approx(1.0)
    assert np.isnan(cos[2]).all()


def test_assign_nearest_class_by_cosine():
    centroids = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = assign_nearest_class(np.array([[5.0, 1.0], [-1.0, 0.0], [0.0, 0.1]]), centroids, "xy")
    assert list(out["nearest_seen"]) == ["x", "y", "y"]
    expected_cos = [5 / np.sqrt(26), 0.0, 1.0]
    assert out["nearest_cosine"].to_numpy() == pytest.approx(expected_cos)
    assert "novelty" not in out  # the novelty module's, not the nearest class's


def test_the_class_a_particle_was_matched_in_is_its_class_where_there_is_one():
    """A particle whose density chose another class's template is that class, with its cosine
    to that class's centroid; a row matched in no seen class keeps its nearest centroid."""
    centroids = np.array([[1.0, 0.0], [0.0, 1.0]])
    mu = np.array([[5.0, 1.0], [5.0, 1.0], [0.0, 1.0]])
    matched = np.array(["y", None, "z"], dtype=object)
    out = assign_nearest_class(mu, centroids, "xy", matched)
    assert list(out["nearest_seen"]) == ["y", "x", "y"]
    assert out["nearest_cosine"].to_numpy() == pytest.approx([1 / np.sqrt(26), 5 / np.sqrt(26), 1])


def test_matched_classes_reads_the_column_and_leaves_the_unnamed_empty(tmp_path):
    table = pd.DataFrame({MATCHED_CLASS: ["1", None, "b"]})
    assert list(matched_classes(table)) == ["1", None, "b"]
    assert matched_classes(table.drop(columns=MATCHED_CLASS)) is None
    latents = pd.DataFrame(
        {
            "class_name": ["1", "2"],
            "split": "train",
            "angle_rot": 0.0,
            "angle_tilt": 0.0,
            "angle_psi": 0.0,
            "mu_0": [1.0, 2.0],
            MATCHED_CLASS: ["2", "1"],
        }
    )
    latents.to_csv(tmp_path / "latents.tsv", sep="\t", index=False)
    # class names that look like numbers stay the names the centroids carry
    assert list(matched_classes(read_latents(tmp_path / "latents.tsv"))) == ["2", "1"]


def test_latent_columns_in_numeric_order():
    table = pd.DataFrame(
        columns=["mu_10", "mu_2", "mu_0", "mu_1", "pose_0", "mu_3", "mu_4"]
        + [f"mu_{i}" for i in range(5, 10)]
        + ["mu_x"]
    )
    assert latent_columns(table, "mu") == [f"mu_{i}" for i in range(11)]
    assert latent_columns(table, "pose") == ["pose_0"]


def test_class_centroids_are_mean_directions_whatever_the_lengths():
    """Each particle counts by its direction only: a plain mean would be pulled to the long
    vector. Particles of other classes are left out; a class without particles is NaN."""
    mu = np.array([[10.0, 0.0], [0.0, 1.0], [0.0, -3.0], [5.0, 5.0]])
    names = np.array(["a", "a", "b", "other"])
    centroids = class_centroids(mu, names, ["a", "b", "empty"])
    np.testing.assert_allclose(centroids[0], [np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(centroids[1], [0.0, -1.0])
    assert np.isnan(centroids[2]).all()


def latents_table(**columns) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "image": ["000001@s.mrcs", "000002@s.mrcs"],
            "class_name": ["007", "1e3"],  # names pandas would read as numbers
            "split": ["train", "val"],
            "angle_rot": 0.0,
            "angle_tilt": 0.0,
            "angle_psi": [10.0, 20.0],
            "mu_0": [0.5, -1.0],
            "mu_1": [2.0, 3.0],
            "pose_0": [0.1, 0.2],
        }
    )
    return table.assign(**columns)


def test_read_latents_keeps_class_names_as_written(tmp_path):
    path = tmp_path / "latents.tsv"
    latents_table().to_csv(path, sep="\t", index=False)
    table = read_latents(path)
    assert list(table["class_name"]) == ["007", "1e3"]
    np.testing.assert_array_equal(table[latent_columns(table, "mu")], [[0.5, 2.0], [-1.0, 3.0]])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mu_1": [2.0, np.inf]}, "row 2 has mu_1 that is not a finite number"),
        ({"pose_0": [0.1, "x"]}, "row 2 has pose_0 that is not a finite number"),
        ({"mu_3": [1.0, 1.0]}, "columns mu_* are not numbered 0..n-1"),
        ({"split": None}, "lacks columns ['split']"),
    ],
)
def test_read_latents_refuses_a_bad_table_in_one_line_naming_the_file(tmp_path, change, message):
    path = tmp_path / "latents.tsv"
    table = latents_table(**{k: v for k, v in change.items() if v is not None})
    table.drop(columns=[k for k, v in change.items() if v is None]).to_csv(
        path, sep="\t", index=False
    )
    with pytest.raises(InputError) as err:
        read_latents(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="latents table not found"):
        read_latents(tmp_path / "missing.tsv")


def test_a_new_particle_lands_among_its_nearest_fitted_particles_by_direction():
    """Three directions of mu (lengths 0.5, 5 and 1), five fitted particles each at one place in
    the map: a new particle goes to the place of the direction it shares (cosine), not of the
    fitted particles nearest by distance (the short first direction, for the first one here)."""
    rng = np.random.default_rng(0)
    fitted = np.repeat(np.eye(3) * [[0.5], [5.0], [1.0]], 5, axis=0)
    fitted += 0.01 * rng.normal(size=fitted.shape)
    places = np.repeat([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], 5, axis=0)
    new = np.array([[0.3, 0.4, 0.0], [0.02, 0.0, 3.0]])
    np.testing.assert_allclose(place_by_neighbours(fitted, places, new), [[10, 0], [0, 10]])
    assert place_by_neighbours(fitted, places, np.empty((0, 3))).shape == (0, 2)
