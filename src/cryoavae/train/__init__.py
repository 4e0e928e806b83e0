"""Training: seeded, resumable, one code path for CPU and CUDA.

- :mod:`.config`: the ``training`` section (:class:`TrainingConfig`) and the device;
- :mod:`.losses`: the Affinity-VAE loss terms; :mod:`.schedules`: the beta and gamma schedules;
- :mod:`.loop`: one epoch, one validation pass, the optimizer, the resumable state;
- :mod:`.augment`: ``wedge_turns``, exact 180-degree turns that keep a missing wedge;
- :mod:`.inputs`: what training reads, checked before the first step, and where splits live;
- :mod:`.checkpoints`: the resume file and the final self-describing checkpoint;
- :mod:`.run`: :func:`train_model`, a short sequence of named steps (place, check, build,
  resume, run the epochs, write the checkpoint and the summary);
- :mod:`.distributed`, :mod:`.launch`: several processes (``torchrun``), one job description.

Only the pipeline's scripts import training: a trained model is rebuilt from its checkpoint.
"""

from cryoavae.train.config import DEVICES, TrainingConfig, resolve_device
from cryoavae.train.run import HISTORY_COLUMNS, RESUME_FILE, train_model

__all__ = [
    "DEVICES",
    "HISTORY_COLUMNS",
    "RESUME_FILE",
    "TrainingConfig",
    "resolve_device",
    "train_model",
]
