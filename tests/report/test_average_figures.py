"""The class averages' FSC figure names where the angles came from: "true" only for a simulation."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cryoavae.report import average_figures


@pytest.fixture
def drawn(monkeypatch):
    """The figures plot_average_fsc would save, kept open for their text."""
    figures = []
    monkeypatch.setattr(average_figures, "save_figure", lambda fig, path: figures.append(fig))
    yield figures
    for fig in figures:
        plt.close(fig)


def texts(fig) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [fig._suptitle.get_text(), *(t.get_text() for t in legend.get_texts())]


CURVE = (np.linspace(0.05, 0.5, 8), np.linspace(1.0, 0.0, 8))


def test_a_users_angles_are_named_not_called_true(drawn, tmp_path):
    curves = {("ribo", "given"): CURVE}
    average_figures.plot_average_fsc(tmp_path / "f.png", curves, 10.0, "the STAR file's angles")
    title, legend = texts(drawn[0])[0], texts(drawn[0])[1:]
    assert title == "Class averages from the STAR file's angles (the model's pose gives none)"
    assert legend == ["given class, the STAR file's angles"]
    assert not any("true" in text for text in texts(drawn[0]))


def test_a_simulations_angles_are_the_truth(drawn, tmp_path):
    curves = {("ribo", "inferred"): CURVE, ("ribo", "true"): CURVE}
    average_figures.plot_average_fsc(tmp_path / "f.png", curves, 10.0)
    assert texts(drawn[0])[1:] == ["true class, model's pose", "true class and pose"]
    assert "against the true orientations" in texts(drawn[0])[0]
