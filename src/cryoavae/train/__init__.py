"""Training: seeded, resumable, one code path for CPU and CUDA.

- :mod:`.config`: the ``training`` section (:class:`TrainingConfig`) and the device;
- :mod:`.loop`: one epoch, one validation pass, the optimizer, the resumable state;
- :mod:`.run`: :func:`train_model`, which builds the loop, resumes, logs, checkpoints and writes
  the history table and the final self-describing checkpoint.
"""

from .config import DEVICES, TrainingConfig, resolve_device
from .run import HISTORY_COLUMNS, RESUME_FILE, train_model

__all__ = [
    "DEVICES",
    "HISTORY_COLUMNS",
    "RESUME_FILE",
    "TrainingConfig",
    "resolve_device",
    "train_model",
]
