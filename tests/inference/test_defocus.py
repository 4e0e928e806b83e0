"""Each particle's defocus as inference reads it: a value that is not a number is never a
traceback, and where the CTF is modelled a row without a defocus is refused in one line naming
it, never matched silently without its CTF."""

import numpy as np
import pandas as pd
import pytest

from cryoavae.core.errors import InputError
from cryoavae.inference.embed import _defocus_um
from cryoavae.particles import DEFOCUS


def test_defocus_is_read_in_micrometres():
    table = pd.DataFrame({DEFOCUS: [20000.0, 35000.0]})
    np.testing.assert_allclose(_defocus_um(table, "orientation.ctf"), [2.0, 3.5])


def test_a_value_that_is_not_a_number_leaves_the_ctf_out_where_nothing_models_it():
    assert _defocus_um(pd.DataFrame({DEFOCUS: ["20000", "abc"]})) is None
    assert _defocus_um(pd.DataFrame({"rlnImageName": ["1@a.mrcs"]})) is None


@pytest.mark.parametrize(
    "values, shown", [([20000.0, 0.0], "0.0"), ([20000.0, "abc"], "'abc'"), ([1.0, np.nan], "nan")]
)
def test_where_the_ctf_is_modelled_a_row_without_a_defocus_is_refused_by_number(values, shown):
    with pytest.raises(InputError, match=rf"row 2 has {DEFOCUS} = {shown}; orientation.ctf") as e:
        _defocus_um(pd.DataFrame({DEFOCUS: values}), "orientation.ctf")
    assert "\n" not in str(e.value)
