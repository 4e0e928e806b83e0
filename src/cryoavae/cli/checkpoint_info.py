"""``cryoavae info``: what a model checkpoint holds, without a study or its config.

A ``model.pt`` is shared and kept apart from the run that made it; this says what it is (the
classes, the model and training settings, epochs trained, the seed, the cryoavae version) and,
where the run's files still sit beside it, how training ended (``history.tsv``,
``train_summary.json``) and how the model scored (``metrics.json``). The checkpoint is read as
:func:`cryoavae.model.vae.load_model` reads it (``torch.load(weights_only=True)``: weights and
settings only, never pickled code), so a file that would not load in the workflow says so here.
A resume file (``checkpoints/last.pt``, a run in progress) is described from its own record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cryoavae.model.vae import load_model, read_checkpoint

MODEL_KEYS = ("ndim", "box_size_px", "channels", "latent_dims", "pose_dims", "decoder")
TRAINING_KEYS = ("epochs", "batch_size", "learning_rate", "reconstruction_loss", "augment")
LOSS_COLUMNS = ("loss", "reconstruction", "kl", "affinity", "val_loss", "val_reconstruction")
METRIC_KEYS = (
    "accuracy",
    "macro_f1",
    "silhouette",
    "prior_correlation",
    "novelty_auroc",
    "pose_correlation",
)


def checkpoint_info(path: str | Path) -> dict:
    """A plain-JSON description of the checkpoint at ``path`` (see the module docstring).

    Raises:
        InputError: the file is missing, unsafe, damaged or not a cryoavae checkpoint.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    if "fingerprint" in checkpoint and "model_config" not in checkpoint:
        return _resume_info(path, checkpoint)
    model, _, _ = load_model(path, checkpoint=checkpoint)  # the weights fit, as in the workflow
    training = checkpoint.get("training_config") or {}
    info = {
        "file": str(path),
        "kind": "trained model",
        "cryoavae_version": checkpoint.get("cryoavae_version"),
        "classes": list(checkpoint.get("class_names") or []),
        "epochs_trained": checkpoint.get("epoch"),
        "seed": checkpoint.get("seed"),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "model": {k: checkpoint["model_config"].get(k) for k in MODEL_KEYS},
        "training": _training_summary(training),
    }
    info.update(_beside(path))
    return info


def _resume_info(path: Path, checkpoint: dict) -> dict:
    """A run in progress: its settings and history from the resume file's own record."""
    fingerprint = checkpoint.get("fingerprint") or {}
    history = checkpoint.get("history") or []
    info = {
        "file": str(path),
        "kind": "resume file of a run in progress (the trained model is model.pt)",
        "epochs_trained": checkpoint.get("epoch"),
        "seed": fingerprint.get("seed"),
        "model": {k: (fingerprint.get("model_config") or {}).get(k) for k in MODEL_KEYS},
        "training": _training_summary(fingerprint.get("training_config") or {}),
    }
    if history:
        info["final_losses"] = _losses(history[-1])
    return info


def _training_summary(training: dict) -> dict:
    summary = {k: training.get(k) for k in TRAINING_KEYS if k in training}
    for weight in ("beta", "gamma"):
        if isinstance(training.get(weight), dict):
            summary[weight] = training[weight].get("value")
    return summary


def _losses(row: dict) -> dict:
    return {k: float(row[k]) for k in LOSS_COLUMNS if k in row and pd.notna(row[k])}


def _beside(path: Path) -> dict:
    """What the training and evaluation rules wrote next to the model, where it is still there
    and readable (these are extras: a damaged one is left out, not an error)."""
    found = {}
    try:
        table = pd.read_csv(path.parent / "history.tsv", sep="\t")
        if len(table):
            found["final_losses"] = _losses(table.iloc[-1].to_dict())
            found["final_losses_from"] = str(path.parent / "history.tsv")
    except (OSError, ValueError):  # absent or not a table (pandas' errors are ValueErrors)
        pass
    summary = _json_beside(path, "train_summary.json")
    if summary:
        keys = ("device", "train_seconds", "n_train", "n_val")
        found["trained_on"] = {k: summary[k] for k in keys if k in summary}
    scores = _json_beside(path, "metrics.json")
    if scores:
        found["metrics"] = {k: scores[k] for k in METRIC_KEYS if scores.get(k) is not None}
        found["metrics_from"] = str(path.parent / "metrics.json")
    return found


def _json_beside(path: Path, name: str) -> dict | None:
    try:
        record = json.loads((path.parent / name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def format_info(info: dict) -> str:
    """The description as lines for a terminal."""
    lines = [f"{info['file']}: {info['kind']}"]
    if info.get("cryoavae_version"):
        lines[0] += f", cryoavae {info['cryoavae_version']}"
    if "classes" in info:
        lines.append(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    lines.append(f"epochs trained: {info.get('epochs_trained')}, seed {info.get('seed')}")
    model = ", ".join(f"{k} {v}" for k, v in info["model"].items() if v is not None)
    if "parameters" in info:
        model += f"; {info['parameters']:,} parameters"
    lines.append(f"model: {model}")
    lines.append("training: " + ", ".join(f"{k} {v}" for k, v in info["training"].items()))
    if "trained_on" in info:
        lines.append("trained on: " + ", ".join(f"{k} {v}" for k, v in info["trained_on"].items()))
    for key, title in (("final_losses", "final epoch"), ("metrics", "metrics")):
        if info.get(key):
            where = info.get(f"{key}_from")
            values = ", ".join(f"{k} {v:.4g}" for k, v in info[key].items())
            lines.append(f"{title}{f' ({where})' if where else ''}: {values}")
    return "\n".join(lines)
