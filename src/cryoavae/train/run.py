"""Training: seeded, resumable, one code path for CPU and CUDA.

:func:`train_model` trains with Adam on the Affinity-VAE loss, reading batches of the train and
val splits from the stacks as it goes (on CUDA the splits are copied to the GPU once instead; see
:mod:`cryoavae.data`), writes the per-epoch history table after every epoch, checkpoints to
``work_dir/last.pt`` every ``checkpoint_every_epochs`` (a rerun after a crash resumes there) and
finally writes a self-describing checkpoint that :func:`cryoavae.model.load_model` rebuilds
from alone.

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
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import __version__
from ..atomic import atomic_path, write_text_atomic
from ..data import (
    ResidentBatches,
    Split,
    batch_source,
    class_names_from_table,
    keep_on_device,
    select_split,
    value_range,
)
from ..errors import InputError
from ..model import ModelConfig, build_model
from ..particles import ParticleImages
from ..runlog import cpu_model
from .config import TrainingConfig, resolve_device
from .distributed import join, leave
from .loop import TrainingLoop, cpu_state, make_optimizer, make_scheduler

try:  # optional: a progress bar on terminals
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

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
RESUME_FILE = "last.pt"
PLACEMENT = ("devices", "nodes")  # how many processes train, not what they train


def _seconds_since_process_start() -> float | None:
    """Age of this process from /proc (Linux); None elsewhere."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(after_name[19])  # field 22 of stat(5); fields after ")" start at 3
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _check_inputs(
    table: pd.DataFrame,
    images: ParticleImages,
    affinity: np.ndarray,
    model_config: ModelConfig,
    class_names: list[str],
) -> None:
    box_shape = tuple(images.shape[1:])
    expected = (model_config.box_size_px,) * model_config.ndim
    if box_shape != expected:
        raise InputError(
            f"particle images are {box_shape} but model.ndim = {model_config.ndim}, "
            f"box_size_px = {model_config.box_size_px} expect {expected}"
        )
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
        raise InputError(f"affinity matrix has shape {affinity.shape}; expected square")
    if len(class_names) > affinity.shape[0]:
        raise InputError(
            f"particle table has class numbers up to {len(class_names)} but the affinity matrix "
            f"covers {affinity.shape[0]} classes"
        )
    if len(images) != len(table):
        raise ValueError(f"images index {len(images)} particles, table has {len(table)}")


def _history_tsv(rows: list[dict[str, float]]) -> str:
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(
        sep="\t", index=False, float_format="%.7g"
    )


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _plain(obj: Any) -> Any:
    """Config dicts with tuples as lists, so checkpoints hold only plain types."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


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


def _select_splits(
    table: pd.DataFrame, images: ParticleImages, config: TrainingConfig
) -> tuple[Split, Split]:
    """Train and val rows; ``unseen`` rows are never read."""
    train, val = select_split(table, "train"), select_split(table, "val")
    if len(train) == 0:
        raise InputError("particle table has no rows with cryoavaeSplit = 'train'")
    if config.reconstruction_loss == "bce":
        low, high = value_range(images, train.rows)
        if low < 0 or high > 1:
            raise InputError(
                f"training.reconstruction_loss = 'bce' needs images in [0, 1]; these span "
                f"[{low:.3g}, {high:.3g}] (use 'mse' for normalised particles)"
            )
    return train, val


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
    _check_inputs(table, images, np.asarray(affinity), model_config, class_names)
    _select_splits(table, images, config)


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
    (``False``); ``None`` decides by device and free memory (:func:`cryoavae.data.keep_on_device`).
    Raises InputError for inconsistent inputs (image shape vs model, affinity size, bce on images
    outside [0, 1], cuda requested without CUDA).
    """
    start = time.perf_counter()
    torch.set_num_threads(threads)
    checkpoint_path, history_path = Path(checkpoint_path), Path(history_path)
    resume_path = Path(work_dir) / RESUME_FILE
    device = resolve_device(config.device)
    cluster = join(device.type)
    if device.type == "cuda" and cluster.world > 1:  # one GPU per rank
        device = torch.device("cuda", cluster.local_rank)
        torch.cuda.set_device(device)
    use_amp = config.amp and device.type == "cuda"
    model_dict, training_dict = _plain(asdict(model_config)), _plain(asdict(config))
    amp_note = " (bf16 autocast)" if use_amp else ""
    ranks = f", rank {cluster.rank} of {cluster.world}" if cluster.world > 1 else ""
    log.info(
        "cryoavae %s train_model: seed %d, device %s%s, threads %d%s",
        *(__version__, seed, device, amp_note, threads, ranks),
    )
    log.info("model config: %s", model_dict)
    log.info("training config: %s", training_dict)
    _warn_about_flat_schedules(config)

    class_names = class_names_from_table(table)
    affinity = np.asarray(affinity, dtype=np.float32)
    _check_inputs(table, images, affinity, model_config, class_names)
    if config.augment == "wedge_turns" and model_config.ndim != 3:
        raise InputError(
            "training.augment = 'wedge_turns' turns subtomograms about x, y and z; use 'none' "
            "for 2-D images"
        )
    train_split, val_split = _select_splits(table, images, config)
    if resident is None:  # one decision for both splits, which share the device's memory
        resident = keep_on_device((len(train_split) + len(val_split)) * images.item_bytes, device)
    train = batch_source(images, train_split, device, resident)
    val = batch_source(images, val_split, device, resident)
    where = f"held on {device}" if isinstance(train, ResidentBatches) else "read per batch"
    log.info(
        "%d train and %d val particles of %d classes (%.0f MB, %s), %.2f s",
        *(len(train), len(val), len(class_names)),
        (len(train) + len(val)) * images.item_bytes / 2**20,
        where,
        time.perf_counter() - start,
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

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
    if cluster.world > 1:  # averages the gradients over the ranks after each backward pass
        ids = [device.index] if device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    optimizer = make_optimizer(model, config, device)
    loop = TrainingLoop(
        model=model,
        step_model=torch.compile(step_model) if config.compile else step_model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config),
        train=train,
        val=val,
        affinity=torch.from_numpy(affinity).to(device),
        config=config,
        use_amp=use_amp,
        shuffle_rng=torch.Generator().manual_seed(seed),
        noise_rng=torch.Generator(device=device).manual_seed(seed + 1),
        cluster=cluster,
    )

    # A resume file counts only if it was written by this very run (settings, seed and data).
    # (the number of ranks is not part of it: their shared state resumes on any number)
    fingerprint = {
        "model_config": model_dict,
        "training_config": {k: v for k, v in training_dict.items() if k not in PLACEMENT},
        "seed": seed,
        "n_train": len(train),
        "n_val": len(val),
        "optimizer": "torch.optim.Adam",  # resume files of the old hand-written Adam are ignored
    }
    history: list[dict[str, float]] = []
    first_epoch = 0
    if resume_path.exists():
        saved = torch.load(resume_path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") == fingerprint:
            loop.restore(saved)
            history, first_epoch = list(saved["history"]), int(saved["epoch"])
            log.info("resuming from %s after epoch %d", resume_path, first_epoch)
        else:
            log.warning("ignoring %s: it was written with other settings or data", resume_path)

    show_bar = tqdm is not None and sys.stderr.isatty() and cluster.main
    startup_seconds = _seconds_since_process_start()
    for epoch in range(first_epoch, config.epochs):
        epoch_start = time.perf_counter()
        beta = config.beta.value_at(epoch, config.epochs)
        gamma = config.gamma.value_at(epoch, config.epochs)
        bar = tqdm(total=len(train), desc=f"epoch {epoch + 1}", leave=False) if show_bar else None
        train_terms = loop.train_epoch(beta, gamma, bar)
        if bar is not None:
            bar.close()
        val_start = time.perf_counter()
        val_terms = loop.evaluate(beta, gamma)
        epoch_end = time.perf_counter()
        seconds = epoch_end - epoch_start
        row = {
            "epoch": epoch + 1,
            **dict(zip(HISTORY_COLUMNS[1:5], train_terms, strict=True)),
            "beta": beta,
            "gamma": gamma,
            "learning_rate": loop.optimizer.param_groups[0]["lr"],
            **dict(zip(HISTORY_COLUMNS[8:12], val_terms, strict=True)),
            "seconds": seconds,  # the whole epoch: training pass, validation, logging
            "val_seconds": epoch_end - val_start,
            "samples_per_s": len(train) / seconds,
        }
        history.append(row)
        loop.scheduler.step()  # the next epoch's learning rate
        if cluster.main:  # one set of outputs, whatever the number of ranks
            write_text_atomic(history_path, _history_tsv(history))
        log.info(
            "epoch %d/%d: loss %.4g (reconstruction %.4g, kl %.4g, affinity %.4g; beta %.3g, "
            "gamma %.3g) val loss %.4g (reconstruction %.4g, kl %.4g, affinity %.4g) "
            "%.2f s, %.0f samples/s",
            *(epoch + 1, config.epochs, *train_terms, beta, gamma, *val_terms, seconds),
            row["samples_per_s"],
        )
        done = epoch + 1
        if done % config.checkpoint_every_epochs == 0 and done < config.epochs and cluster.main:
            resume = {"fingerprint": fingerprint, "history": history, "epoch": done}
            _save({**resume, **loop.state()}, resume_path)

    if cluster.main:
        final = {
            "model_config": model_dict,
            "training_config": training_dict,
            "state_dict": cpu_state(model),
            "optimizer": loop.optimizer.state_dict(),
            "epoch": config.epochs,
            "seed": seed,
            "class_names": class_names,
            "cryoavae_version": __version__,
        }
        _save(final, checkpoint_path)
        if resume_path.exists():
            resume_path.unlink()  # a forced rerun should train afresh, not resume a finished run
    cluster.barrier()  # no rank leaves before the outputs are written
    leave()
    # every epoch's time from the history, so a resumed run reports the whole training
    train_seconds = float(sum(row["seconds"] for row in history))
    n_trained = len(train) * config.epochs
    last = history[-1]
    summary = {
        "device": str(device),
        "ndim": model_config.ndim,
        "pose_dims": model_config.pose_dims,
        "pose_encoding": model_config.pose_encoding,
        "epochs": config.epochs,
        "resumed_from_epoch": first_epoch,
        "train_seconds": train_seconds,
        "train_samples_per_second": n_trained / train_seconds if train_seconds > 0 else math.nan,
        "startup_seconds": startup_seconds,
        "n_train": len(train),
        "n_val": len(val),
        "ranks": cluster.world,
        "threads": threads,
        "cpu_model": cpu_model(),
        **{k: last[k] for k in HISTORY_COLUMNS[1:5] + HISTORY_COLUMNS[8:12]},
    }
    log.info(
        "trained %d epochs in %.1f s (%.0f samples/s)",
        *(config.epochs, train_seconds, summary["train_samples_per_second"]),
    )
    return summary
