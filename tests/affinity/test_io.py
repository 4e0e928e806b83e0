"""The prior on disk (cryoavae.affinity.io): a header row of class names over the square matrix;
it round-trips in any class order, and a file that is not a valid prior is refused in one line
naming it."""

import logging

import numpy as np
import pytest

from cryoavae.affinity.io import read_affinity_csv, write_affinity_csv
from cryoavae.core.errors import InputError

NAMES = ["1bxn", "3qm1", "mine"]
MATRIX = np.array([[1.0, 0.25, -0.5], [0.25, 1.0, 0.125], [-0.5, 0.125, 1.0]])


def test_csv_round_trip_and_reordering(tmp_path):
    path = tmp_path / "affinity.csv"
    write_affinity_csv(path, NAMES, MATRIX)
    assert path.read_text().splitlines()[0] == "1bxn,3qm1,mine"
    np.testing.assert_array_equal(read_affinity_csv(path, NAMES), MATRIX)
    order = [2, 0, 1]
    np.testing.assert_array_equal(
        read_affinity_csv(path, [NAMES[i] for i in order]), MATRIX[np.ix_(order, order)]
    )


def test_csv_with_a_label_column_is_accepted(tmp_path):
    path = tmp_path / "pandas.csv"
    rows = [",1bxn,3qm1,mine"] + [
        ",".join([n, *map(str, row)]) for n, row in zip(NAMES, MATRIX, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    np.testing.assert_array_equal(read_affinity_csv(path, NAMES), MATRIX)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1bxn,3qm1,mine\n1,0.2,0.1\n0.2,1,0.3\n", "is not square"),
        ("1bxn,3qm1,mine\n1,0.2,0.1\n0.2,1,0.3\n0.1,0.3\n", "is not square"),
        ("1bxn,3qm1,mine\n1,0.2,0.1\n0.5,1,0.3\n0.1,0.3,1\n", r"not symmetric: 1bxn,3qm1 = 0\.2"),
        ("1bxn,3qm1,other\n1,0.2,0.1\n0.2,1,0.3\n0.1,0.3,1\n", r"unknown \['other'\]"),
        ("1bxn,3qm1,mine\n1,0.2,1.5\n0.2,1,0.3\n1.5,0.3,1\n", r"1\.5 at 1bxn,mine is outside"),
        ("1bxn,3qm1,mine\n0,0.2,0.1\n0.2,0,0.3\n0.1,0.3,0\n", "diagonal must be 1"),
        ("1bxn,3qm1,mine\n1,x,0.1\nx,1,0.3\n0.1,0.3,1\n", r"row 2: 'x' is not a number"),
        ("", "is empty"),
    ],
)
def test_bad_csv_is_refused_with_one_clear_line(tmp_path, text, message):
    path = tmp_path / "user.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_affinity_csv(path, NAMES)
    assert "\n" not in str(err.value) and "user.csv" in str(err.value)


def test_symmetrize_averages_an_asymmetric_matrix_and_names_the_worst_pair(tmp_path, caplog):
    """The original Affinity-VAE's matrices may be slightly asymmetric: with ``symmetrize`` they
    are read as (A + A^T) / 2, in the study's class order, with a warning."""
    path = tmp_path / "legacy.csv"
    path.write_text("1bxn,3qm1,mine\n1,0.2,0.1\n0.4,1,0.3\n0.1,0.3,1\n")
    with caplog.at_level(logging.WARNING, logger="cryoavae.affinity.io"):
        a = read_affinity_csv(path, ["mine", "1bxn", "3qm1"], symmetrize=True)
    np.testing.assert_allclose(a, [[1.0, 0.1, 0.3], [0.1, 1.0, 0.3], [0.3, 0.3, 1.0]])
    assert "largest asymmetry 0.2, between 1bxn and 3qm1" in caplog.text


def test_writing_names_that_do_not_fit_the_matrix_is_refused(tmp_path):
    with pytest.raises(InputError, match="2 class names for a 3x3 matrix"):
        write_affinity_csv(tmp_path / "a.csv", NAMES[:2], MATRIX)
    assert not (tmp_path / "a.csv").exists()
