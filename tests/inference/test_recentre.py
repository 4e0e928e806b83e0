"""Re-centring a variant's particles on the centres another variant's matching found."""

import numpy as np
import pandas as pd
import pytest
from particle_fixtures import make_table

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.inference.latents import INFERRED_SHIFTS
from cryoavae.inference.recentre import recentred_table, with_recentring


def _latents(table: pd.DataFrame, shifts: np.ndarray) -> pd.DataFrame:
    latents = pd.DataFrame({"image": table[P.IMAGE], "mu_0": np.arange(len(table), dtype=float)})
    return latents.assign(**{c: shifts[:, a] for a, c in enumerate(INFERRED_SHIFTS)})


def test_the_table_gains_each_particles_centre_row_for_row():
    table = make_table(4, "a.mrcs")
    shifts = np.arange(12, dtype=float).reshape(4, 3) - 5
    out = recentred_table(table, _latents(table, shifts), "l.tsv")
    np.testing.assert_array_equal(out[list(P.RECENTRE)].to_numpy(), shifts)
    assert out[P.IMAGE].tolist() == table[P.IMAGE].tolist()
    again = recentred_table(out, _latents(table, -shifts), "l.tsv")  # replaced, not added
    np.testing.assert_array_equal(again[list(P.RECENTRE)].to_numpy(), -shifts)


def test_latents_without_centres_or_of_other_particles_are_refused():
    table = make_table(3, "a.mrcs")
    latents = _latents(table, np.zeros((3, 3)))
    with pytest.raises(InputError, match="l.tsv: has no .*max_shift_angstrom"):
        recentred_table(table, latents.drop(columns=list(INFERRED_SHIFTS)), "l.tsv")
    with pytest.raises(InputError, match="row for row"):
        recentred_table(table, latents.iloc[::-1].reset_index(drop=True), "l.tsv")
    with pytest.raises(InputError, match="row for row"):
        recentred_table(make_table(2, "a.mrcs"), latents, "l.tsv")
    latents.loc[1, INFERRED_SHIFTS[2]] = np.nan
    with pytest.raises(InputError, match="row 2 has no centre"):
        recentred_table(table, latents, "l.tsv")


def test_shifts_written_stay_relative_to_the_boxes_as_picked():
    """What the second matcher finds is what is left after the re-centring: the two add."""
    table = make_table(2, "a.mrcs")
    first = np.array([[10.0, -5.0, 2.0], [0.0, 3.0, -1.0]])
    recentred = recentred_table(table, _latents(table, first), "l.tsv")
    residual = np.array([[-1.0, 0.5, 0.0], [2.0, 0.0, 0.0]])
    out = with_recentring(_latents(table, residual), recentred)
    np.testing.assert_allclose(out[list(INFERRED_SHIFTS)].to_numpy(), first + residual)
    unsearched = with_recentring(
        _latents(table, residual).drop(columns=list(INFERRED_SHIFTS)), recentred
    )
    np.testing.assert_allclose(unsearched[list(INFERRED_SHIFTS)].to_numpy(), first)
    plain = _latents(table, residual)
    pd.testing.assert_frame_equal(with_recentring(plain, table), plain)  # nothing re-centred
    with pytest.raises(InputError, match="row for row"):
        with_recentring(plain.iloc[::-1].reset_index(drop=True), recentred)
