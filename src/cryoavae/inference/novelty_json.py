"""A fitted novelty model on disk: ``models/<variant>/novelty.json``.

The evaluation writes it (:func:`write_novelty_json`); ``annotate`` and ``apply`` read it
(:func:`read_novelty_json`), so that a new particle set is flagged by the threshold the study set.
The training particles' mu are not stored: the study's latents table holds them, and reading
checks that the table given is the one the model was fitted on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.errors import InputError
from cryoavae.inference.latents import latent_columns
from cryoavae.inference.novelty import NoveltyModel

__all__ = ["read_novelty_json", "write_novelty_json"]

FORMAT = 1


def write_novelty_json(path: str | os.PathLike, model: NoveltyModel) -> None:
    """``model`` as JSON, atomically (the training particles' mu stay in the latents table)."""
    data = {
        "format": FORMAT,
        "description": "cryoavae novelty score fitted on the train particles' mu; a particle "
        "whose score is above threshold is flagged novel (cryoavae.inference.novelty)",
        "score": model.score,
        "threshold": model.threshold if math.isfinite(model.threshold) else None,
        "seen_recall": model.seen_recall,
        "calibration_split": model.calibration_split,
        "n_calibration": model.n_calibration,
        "calibration_seen_recall": model.calibration_seen_recall,
        "n_train": model.n_train,
        "neighbors": model.neighbors,
        "classes": list(model.classes),
        "means": model.means.tolist(),
        "precisions": model.precisions.tolist(),
        "shared_precision": model.shared_precision.tolist(),
        "centroids": model.centroids.tolist(),
        "standardisation": None if model.standardisation is None else list(model.standardisation),
        "class_misfit": {c: list(v) for c, v in model.class_misfit.items()},
    }
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def read_novelty_json(path: str | os.PathLike, reference: pd.DataFrame) -> NoveltyModel:
    """The novelty model in ``path``, with the training particles' mu of ``reference`` (the
    study's latents table) for ``knn``.

    Raises:
        InputError: the file is missing or malformed, or ``reference``'s training particles are
            not those the model was fitted on (another variant's or study's latents).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        model = NoveltyModel(
            score=str(data["score"]),
            classes=tuple(str(c) for c in data["classes"]),
            means=np.asarray(data["means"], np.float64),
            precisions=np.asarray(data["precisions"], np.float64),
            shared_precision=np.asarray(data["shared_precision"], np.float64),
            centroids=np.asarray(data["centroids"], np.float64),
            n_train=int(data["n_train"]),
            neighbors=int(data["neighbors"]),
            seen_recall=float(data["seen_recall"]),
            threshold=math.inf if data["threshold"] is None else float(data["threshold"]),
            calibration_split=str(data["calibration_split"]),
            n_calibration=int(data["n_calibration"]),
            calibration_seen_recall=float(data["calibration_seen_recall"]),
            standardisation=_standardisation(data.get("standardisation")),
            class_misfit=_class_misfit(data.get("class_misfit") or {}),
        )
    except FileNotFoundError:
        raise InputError(f"{path}: novelty model not found") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a novelty model ({exc!r})") from None
    return replace(model, train_mu=_same_training(model, reference, path))


def _standardisation(values) -> tuple[float, float, float, float] | None:
    if values is None:
        return None
    if len(values) != 4:
        raise ValueError(f"standardisation has {len(values)} values, expected 4")
    return tuple(float(v) for v in values)


def _class_misfit(values: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for name, pair in values.items():
        if len(pair) != 2:
            raise ValueError(f"class_misfit of {name!r} has {len(pair)} values, expected 2")
        out[str(name)] = (float(pair[0]), float(pair[1]))
    return out


def _same_training(model: NoveltyModel, reference: pd.DataFrame, path: Path) -> np.ndarray:
    """The reference's training mu, after checking they are the ones ``model`` was fitted on."""
    train = reference[reference["split"].astype(str) == "train"]
    mu = train[latent_columns(train, "mu")].to_numpy(np.float64)
    names = train["class_name"].astype(str).to_numpy()
    same = len(mu) == model.n_train and mu.shape[1] == model.means.shape[1]
    if same and set(names) == set(model.classes):
        means = np.stack([mu[names == c].mean(axis=0) for c in model.classes])
        same = np.allclose(means, model.means, rtol=1e-6, atol=1e-9)
    else:
        same = False
    if not same:
        raise InputError(
            f"{path} was fitted on other training particles than the reference latents' "
            f"({model.n_train} vs {len(mu)}): give the latents.tsv of the same model"
        )
    return mu
