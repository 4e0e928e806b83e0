"""Training: seeded, resumable, one code path for CPU and CUDA.

:func:`train_model` trains with Adam on the Affinity-VAE loss, reading batches of the train and
val splits from the stacks as it goes (on CUDA the splits are copied to the GPU once instead; see
:mod:`cryoavae.particles.batches`), writes the per-epoch history table after every epoch,
checkpoints to ``work_dir/last.pt`` every ``checkpoint_every_epochs`` (a rerun after a crash
resumes there) and finally writes a self-describing checkpoint that
:func:`cryoavae.model.vae.load_model` rebuilds from alone. The checks of the inputs live in
:mod:`.inputs`, the resume file and the final checkpoint in :mod:`.checkpoints`.

Example::

    table = read_particle_table("particles.star")
    images = ParticleImages(table, "particles.star", box_ndim=3)
    summary = train_model(table, images, affinity, ModelConfig(), TrainingConfig(), seed=0,
                          checkpoint_path=Path("model.pt"), history_path=Path("history.tsv"),
                          work_dir=Path("checkpoints"))
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cryoavae import __version__
from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.progress import Progress
from cryoavae.core.runlog import cpu_model
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model
from cryoavae.particles import ParticleImages
from cryoavae.particles.batches import ResidentBatches, StreamedBatches, class_names_from_table
from cryoavae.train.checkpoints import (
    RESUME_FILE,
    plain_config,
    read_resume,
    run_fingerprint,
    save_final,
    save_resume,
)
from cryoavae.train.config import TrainingConfig, resolve_device
from cryoavae.train.distributed import Cluster, join, leave
from cryoavae.train.inputs import check_augmentation, check_inputs, place_splits, select_splits
from cryoavae.train.loop import TrainingLoop, make_optimizer, make_scheduler

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "reconstruction",
    "kl",
    "affinity",
    "beta",
    "gamma",
    "learning_rate",
    "val_loss",
    "val_reconstruction",
    "val_kl",
    "val_affinity",
    "seconds",
    "val_seconds",
    "samples_per_s",
)
# the history columns an epoch's log line shows, in its order
_LOGGED_COLUMNS = (*HISTORY_COLUMNS[1:7], *HISTORY_COLUMNS[8:13], "samples_per_s")


def _seconds_since_process_start() -> float | None:
    """Age of this process from /proc (Linux); None elsewhere."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(after_name[19])  # field 22 of stat(5); fields after ")" start at 3
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _history_tsv(rows: list[dict[str, float]]) -> str:
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(
        sep="\t", index=False, float_format="%.7g"
    )


def _warn_about_flat_schedules(config: TrainingConfig) -> None:
    for name in ("beta", "gamma"):
        schedule = getattr(config, name)
        reached = max(schedule.value_at(e, config.epochs) for e in range(config.epochs))
        if reached <= schedule.min_value < schedule.value:
            log.warning(
                "training.%s: %s with n_cycles %d over %d epochs never rises above min_value %.3g "
                "(use fewer cycles or more epochs)",
                name,
                schedule.schedule,
                schedule.n_cycles,
                config.epochs,
                schedule.min_value,
            )


def check_training_inputs(
    table: pd.DataFrame,
    images: ParticleImages,
    affinity: np.ndarray,
    model_config: ModelConfig,
    config: TrainingConfig,
) -> None:
    """Every check :func:`train_model` makes before its first step, for a launcher to make
    before it starts any process (InputError on the first problem)."""
    class_names = class_names_from_table(table)
    check_inputs(table, images, np.asarray(affinity), model_config, class_names)
    select_splits(table, images, config)


def train_model(
    table: pd.DataFrame,
    images: ParticleImages,
    affinity: np.ndarray,
    model_config: ModelConfig,
    config: TrainingConfig,
    seed: int,
    checkpoint_path: Path,
    history_path: Path,
    work_dir: Path,
    threads: int = 2,
    resident: bool | None = None,
) -> dict[str, Any]:
    """Train on the ``train`` split, validate on ``val`` (``unseen`` is never read) and return a
    summary: device, ndim, pose_dims, pose_encoding, epochs, train_seconds,
    train_samples_per_second, startup_seconds (process start to the first step),
    resumed_from_epoch, n_train, n_val and the last epoch's loss terms (train and val).

    ``affinity`` ``(n_classes, n_classes)``: row ``i`` is class number ``i + 1``.
    ``resident`` holds the splits on the device (``True``) or reads each batch from the stacks
    (``False``); ``None`` decides by device and free memory
    (:func:`cryoavae.particles.batches.keep_on_device`). Raises InputError for inconsistent inputs
    (image shape vs model, affinity size, bce on images outside [0, 1], cuda requested without
    CUDA).
    """
    start = time.perf_counter()
    torch.set_num_threads(threads)
    checkpoint_path, history_path = Path(checkpoint_path), Path(history_path)
    resume_path = Path(work_dir) / RESUME_FILE
    place = _join_processes(config)
    model_dict, training_dict = plain_config(asdict(model_config)), plain_config(asdict(config))
    _log_settings(place, seed, threads, model_dict, training_dict)
    _warn_about_flat_schedules(config)
    if model_config.translation_px > 0 and config.shift_equivariance <= 0:
        log.warning(
            "model.translation_px without training.shift_equivariance: the reconstruction alone "
            "trains the shift head, which can settle at its bound at low SNR (docs/science.md "
            "4.6; 1.0 keeps it finding the centre)"
        )

    class_names = class_names_from_table(table)
    affinity = np.asarray(affinity, dtype=np.float32)
    check_inputs(table, images, affinity, model_config, class_names)
    check_augmentation(config, model_config)
    train, val = place_splits(table, images, config, place.device, resident)
    log.info(
        "%d train and %d val particles of %d classes (%.0f MB, %s), %.2f s",
        *(len(train), len(val), len(class_names)),
        (len(train) + len(val)) * images.item_bytes / 2**20,
        f"held on {place.device}" if isinstance(train, ResidentBatches) else "read per batch",
        time.perf_counter() - start,
    )
    loop = _build_loop(model_config, config, seed, place, train, val, affinity)
    fingerprint = run_fingerprint(model_dict, training_dict, seed, len(train), len(val))
    history, first_epoch = _resume(loop, resume_path, fingerprint)
    startup_seconds = _seconds_since_process_start()
    _run_epochs(loop, history, first_epoch, history_path, resume_path, fingerprint)

    if place.cluster.main:  # one set of outputs, whatever the number of ranks
        save_final(checkpoint_path, resume_path, loop, model_dict, training_dict, seed, class_names)
    place.cluster.barrier()  # no rank leaves before the outputs are written
    leave()
    summary = _summary(place, loop, model_config, history, first_epoch, startup_seconds, threads)
    log.info(
        "trained %d epochs in %.1f s (%.0f samples/s)",
        *(config.epochs, summary["train_seconds"], summary["train_samples_per_second"]),
    )
    return summary


@dataclass(frozen=True)
class _Placement:
    """Where this process trains: its device, the training processes it is among, and whether it
    computes in bf16 (on CUDA only)."""

    device: torch.device
    cluster: Cluster
    use_amp: bool


def _join_processes(config: TrainingConfig) -> _Placement:
    """Join the other training processes (if any) and take this rank's device: one GPU per rank."""
    device = resolve_device(config.device)
    cluster = join(device.type)
    if device.type == "cuda" and cluster.world > 1:  # one GPU per rank
        device = torch.device("cuda", cluster.local_rank)
        torch.cuda.set_device(device)
    return _Placement(device, cluster, config.amp and device.type == "cuda")


def _log_settings(
    place: _Placement,
    seed: int,
    threads: int,
    model_dict: dict[str, Any],
    training_dict: dict[str, Any],
) -> None:
    """The run's version, seed, placement and full settings, so a log alone tells how it ran."""
    amp_note = " (bf16 autocast)" if place.use_amp else ""
    cluster = place.cluster
    ranks = f", rank {cluster.rank} of {cluster.world}" if cluster.world > 1 else ""
    log.info(
        "cryoavae %s train_model: seed %d, device %s%s, threads %d%s",
        *(__version__, seed, place.device, amp_note, threads, ranks),
    )
    log.info("model config: %s", model_dict)
    log.info("training config: %s", training_dict)


def _build_model(
    model_config: ModelConfig, seed: int, place: _Placement
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model on the device, and the module a step runs: on several processes a wrapper that
    averages the gradients over the ranks after each backward pass."""
    device, cluster = place.device, place.cluster
    # channels-last convolution weights: 10-30 % faster training steps on CPU (measured here)
    layout = torch.channels_last_3d if model_config.ndim == 3 else torch.channels_last
    model = build_model(model_config, seed).to(device, memory_format=layout)
    if cluster.world > 1 and model_config.batch_norm:
        if device.type == "cuda":  # batch statistics over the whole batch, as on one GPU
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # torch's SyncBatchNorm runs on GPUs only
            log.warning(
                "model.batch_norm on %d CPU processes: each normalises by the statistics of its "
                "own piece of the batch, so training differs slightly from one process",
                cluster.world,
            )
    step_model = model
    if cluster.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model, step_model


def _build_loop(
    model_config: ModelConfig,
    config: TrainingConfig,
    seed: int,
    place: _Placement,
    train: ResidentBatches | StreamedBatches,
    val: ResidentBatches | StreamedBatches,
    affinity: np.ndarray,
) -> TrainingLoop:
    """Model, optimizer, schedule and the seeded generators: everything an epoch needs."""
    device = place.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model, step_model = _build_model(model_config, seed, place)
    optimizer = make_optimizer(model, config, device)
    return TrainingLoop(
        model=model,
        step_model=torch.compile(step_model) if config.compile else step_model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config),
        train=train,
        val=val,
        affinity=torch.from_numpy(affinity).to(device),
        config=config,
        use_amp=place.use_amp,
        shuffle_rng=torch.Generator().manual_seed(seed),
        noise_rng=torch.Generator(device=device).manual_seed(seed + 1),
        cluster=place.cluster,
    )


def _resume(
    loop: TrainingLoop, resume_path: Path, fingerprint: dict[str, Any]
) -> tuple[list[dict[str, float]], int]:
    """The history so far and the epochs done, restoring the loop from the resume file when this
    very run wrote it; an empty history and epoch 0 otherwise."""
    if not resume_path.exists():
        return [], 0
    saved = read_resume(resume_path, fingerprint)
    if saved is None:
        log.warning("ignoring %s: it was written with other settings or data", resume_path)
        return [], 0
    loop.restore(saved)
    history, first_epoch = list(saved["history"]), int(saved["epoch"])
    log.info("resuming from %s after epoch %d", resume_path, first_epoch)
    return history, first_epoch


def _run_epochs(
    loop: TrainingLoop,
    history: list[dict[str, float]],
    first_epoch: int,
    history_path: Path,
    resume_path: Path,
    fingerprint: dict[str, Any],
) -> None:
    """Train from ``first_epoch`` to the last, appending to ``history``; the table is rewritten
    after every epoch and the resume file every ``checkpoint_every_epochs`` (not after the last:
    the final checkpoint follows). Besides each epoch's line, the log shows how far the whole
    training is, with the time it still needs, within epochs too (an epoch of a large set can
    take hours); validation counts, so the time left includes it."""
    config, cluster = loop.config, loop.cluster
    epochs, per_epoch = config.epochs - first_epoch, len(loop.train) + len(loop.val)
    what = f"training ({len(loop.train)} train + {len(loop.val)} val particles x {epochs} epochs)"
    with Progress(per_epoch * epochs, what, log) as progress:
        for epoch in range(first_epoch, config.epochs):
            row = _train_epoch(loop, epoch, progress)
            history.append(row)
            loop.scheduler.step()  # the next epoch's learning rate
            if cluster.main:  # one set of outputs, whatever the number of ranks
                write_text_atomic(history_path, _history_tsv(history))
            log.info(
                "epoch %d/%d: loss %.4g (reconstruction %.4g, kl %.4g, affinity %.4g; beta %.3g, "
                "gamma %.3g) val loss %.4g (reconstruction %.4g, kl %.4g, affinity %.4g) "
                "%.2f s, %.0f samples/s",
                *(row["epoch"], config.epochs, *(row[k] for k in _LOGGED_COLUMNS)),
            )
            done = epoch + 1
            if done % config.checkpoint_every_epochs == 0 and done < config.epochs and cluster.main:
                save_resume(resume_path, fingerprint, history, done, loop)


def _train_epoch(loop: TrainingLoop, epoch: int, progress: Progress) -> dict[str, float]:
    """One training pass and one validation pass, as the epoch's row of the history table."""
    config = loop.config
    epoch_start = time.perf_counter()
    beta = config.beta.value_at(epoch, config.epochs)
    gamma = config.gamma.value_at(epoch, config.epochs)
    train_terms = loop.train_epoch(beta, gamma, progress)
    val_start = time.perf_counter()
    val_terms = loop.evaluate(beta, gamma, progress)
    epoch_end = time.perf_counter()
    seconds = epoch_end - epoch_start
    return {
        "epoch": epoch + 1,
        **dict(zip(HISTORY_COLUMNS[1:5], train_terms, strict=True)),
        "beta": beta,
        "gamma": gamma,
        "learning_rate": loop.optimizer.param_groups[0]["lr"],
        **dict(zip(HISTORY_COLUMNS[8:12], val_terms, strict=True)),
        "seconds": seconds,  # the whole epoch: training pass, validation, logging
        "val_seconds": epoch_end - val_start,
        "samples_per_s": len(loop.train) / seconds,
    }


def _summary(
    place: _Placement,
    loop: TrainingLoop,
    model_config: ModelConfig,
    history: list[dict[str, float]],
    first_epoch: int,
    startup_seconds: float | None,
    threads: int,
) -> dict[str, Any]:
    """What :func:`train_model` returns (see there)."""
    config = loop.config
    # every epoch's time from the history, so a resumed run reports the whole training
    train_seconds = float(sum(row["seconds"] for row in history))
    n_trained = len(loop.train) * config.epochs
    last = history[-1]
    return {
        "device": str(place.device),
        "ndim": model_config.ndim,
        "pose_dims": model_config.pose_dims,
        "pose_encoding": model_config.pose_encoding,
        "epochs": config.epochs,
        "resumed_from_epoch": first_epoch,
        "train_seconds": train_seconds,
        "train_samples_per_second": n_trained / train_seconds if train_seconds > 0 else math.nan,
        "startup_seconds": startup_seconds,
        "n_train": len(loop.train),
        "n_val": len(loop.val),
        "ranks": place.cluster.world,
        "threads": threads,
        "cpu_model": cpu_model(),
        **{k: last[k] for k in HISTORY_COLUMNS[1:5] + HISTORY_COLUMNS[8:12]},
    }
