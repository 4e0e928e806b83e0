"""The training-history figure is a real image for ordinary, one-epoch and val-less histories."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cryoavae.report.training_figures import plot_training_history
from cryoavae.train import HISTORY_COLUMNS


def history(epochs: int, with_val: bool = True) -> pd.DataFrame:
    e = np.arange(1, epochs + 1, dtype=float)
    rows = {column: np.zeros(epochs) for column in HISTORY_COLUMNS}
    rows.update(
        epoch=e,
        loss=3 / e,
        reconstruction=1 / e + 0.5,
        kl=0.1 * e,
        affinity=0.3 / e,
        beta=np.where(e % 4 < 2, 1.0, 0.0),
        gamma=np.full(epochs, 10.0),
        learning_rate=np.full(epochs, 1e-3),
        seconds=np.full(epochs, 2.0),
        samples_per_s=np.full(epochs, 500.0),
    )
    for term in ("loss", "reconstruction", "kl", "affinity"):
        rows[f"val_{term}"] = rows[term] * 1.1 if with_val else np.full(epochs, np.nan)
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


@pytest.mark.parametrize("epochs, with_val", [(12, True), (1, True), (5, False), (80, True)])
def test_history_figure_is_a_real_image(tmp_path, epochs, with_val):
    path = tmp_path / "curves.png"
    plot_training_history(path, history(epochs, with_val), title="variant avae")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert image.format == "PNG" and image.size[0] >= 1200
    assert pixels.std() > 10
    # the training curve (tab:blue) is drawn; the validation one (tab:orange) only with val data
    blue = (np.abs(pixels.astype(int) - [31, 119, 180]).max(-1) < 30).sum()
    orange = (np.abs(pixels.astype(int) - [255, 127, 14]).max(-1) < 30).sum()
    assert blue > 20
    assert (orange > 20) == with_val
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_history_without_its_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks columns"):
        plot_training_history(tmp_path / "x.png", pd.DataFrame({"epoch": [1]}))
