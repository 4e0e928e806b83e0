"""What a training run keeps on disk besides its history table: the resume file and the final
checkpoint.

The resume file ``work_dir/last.pt`` (:data:`RESUME_FILE`) holds the loop's state, the history so
far and a fingerprint of the run (settings, seed and data sizes); a rerun resumes from it only when
its own fingerprint is the same. The final checkpoint is self-describing:
:func:`cryoavae.model.vae.load_model` rebuilds the model from it alone. Both are written
atomically, so a crash never leaves half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cryoavae import __version__
from cryoavae.core.atomic import atomic_path
from cryoavae.train.loop import TrainingLoop, cpu_state

RESUME_FILE = "last.pt"
PLACEMENT = ("devices", "nodes")  # how many processes train, not what they train


def plain_config(obj: Any) -> Any:
    """Config dicts with tuples as lists, so checkpoints hold only plain types."""
    if isinstance(obj, dict):
        return {k: plain_config(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain_config(v) for v in obj]
    return obj


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def run_fingerprint(
    model_dict: dict[str, Any],
    training_dict: dict[str, Any],
    seed: int,
    n_train: int,
    n_val: int,
) -> dict[str, Any]:
    """What a resume file must match to count: it was written by this very run (settings, seed
    and data). The number of ranks is not part of it: their shared state resumes on any number."""
    return {
        "model_config": model_dict,
        "training_config": {k: v for k, v in training_dict.items() if k not in PLACEMENT},
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "optimizer": "torch.optim.Adam",  # resume files of the old hand-written Adam are ignored
    }


def read_resume(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The resume file's contents if this very run wrote it, else None."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved if saved.get("fingerprint") == fingerprint else None


def save_resume(
    path: Path,
    fingerprint: dict[str, Any],
    history: list[dict[str, float]],
    epoch: int,
    loop: TrainingLoop,
) -> None:
    """Everything a rerun needs to go on after ``epoch`` epochs as if never stopped."""
    resume = {"fingerprint": fingerprint, "history": history, "epoch": epoch}
    save_checkpoint({**resume, **loop.state()}, path)


def save_final(
    checkpoint_path: Path,
    resume_path: Path,
    loop: TrainingLoop,
    model_dict: dict[str, Any],
    training_dict: dict[str, Any],
    seed: int,
    class_names: list[str],
) -> None:
    """Write the self-describing checkpoint of the trained model, then drop the resume file: a
    forced rerun should train afresh, not resume a finished run."""
    final = {
        "model_config": model_dict,
        "training_config": training_dict,
        "state_dict": cpu_state(loop.model),
        "optimizer": loop.optimizer.state_dict(),
        "epoch": loop.config.epochs,
        "seed": seed,
        "class_names": class_names,
        "cryoavae_version": __version__,
    }
    save_checkpoint(final, checkpoint_path)
    if resume_path.exists():
        resume_path.unlink()
