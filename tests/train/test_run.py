"""Training: config, outputs, checkpoint round trip, unseen particles kept out, seeding, and
resuming after a SIGKILL."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from particle_fixtures import BOX, write_particles

from cryoavae import particles
from cryoavae.core.errors import InputError
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import load_model
from cryoavae.particles.batches import select_split
from cryoavae.train import (
    HISTORY_COLUMNS,
    RESUME_FILE,
    TrainingConfig,
    train_model,
)
from cryoavae.train.losses import avae_loss
from cryoavae.train.schedules import ScheduleConfig

ROOT = Path(__file__).resolve().parents[2]
MODEL = ModelConfig(ndim=2, box_size_px=BOX, channels=(4, 8), latent_dims=4, pose_dims=1)
AFFINITY = np.array([[1.0, 0.3, 0.6], [0.3, 1.0, -0.2], [0.6, -0.2, 1.0]])


pytestmark = pytest.mark.usefixtures("one_thread")


def run_training(star: Path, out: Path, epochs: int = 3, seed: int = 0, **training) -> dict:
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, box_ndim=2)
    config = TrainingConfig(
        epochs=epochs, batch_size=8, checkpoint_every_epochs=1, device="cpu", **training
    )
    return train_model(
        table,
        images,
        AFFINITY,
        MODEL,
        config,
        seed=seed,
        checkpoint_path=out / "model.pt",
        history_path=out / "history.tsv",
        work_dir=out / "work",
        threads=1,
    )


@pytest.fixture(scope="module")
def star(tmp_path_factory) -> Path:
    return write_particles(tmp_path_factory.mktemp("particles"))


# --- config ------------------------------------------------------------------------------------


def test_from_dict_builds_nested_schedules_and_refuses_unknown_keys():
    config = TrainingConfig.from_dict({"epochs": 3, "gamma": {"value": 5, "schedule": "ramp"}})
    assert config.gamma == ScheduleConfig(5, "ramp") and config.beta == ScheduleConfig(1.0)
    with pytest.raises(InputError, match="training: unknown key 'epoch'"):
        TrainingConfig.from_dict({"epoch": 3})
    with pytest.raises(InputError, match=r"training\.beta: unknown key 'max'"):
        TrainingConfig.from_dict({"beta": {"value": 1, "max": 2}})
    with pytest.raises(InputError, match=r"training\.batch_size = 1"):
        TrainingConfig.from_dict({"batch_size": 1})
    with pytest.raises(InputError, match=r"training\.device = 'gpu'"):
        TrainingConfig.from_dict({"device": "gpu"})


# --- a run -------------------------------------------------------------------------------------


def test_run_writes_history_and_a_self_describing_checkpoint(star, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cryoavae.train.run"):
        summary = run_training(
            star, tmp_path, epochs=3, gamma=ScheduleConfig(2.0, "cycle_linear", n_cycles=1)
        )
    # how far the whole training is (train and val particles of every epoch), then done
    progress = [m for m in caplog.messages if m.startswith("training (24 train + 8 val")]
    assert len(progress) >= 10 and "% (" in progress[0] and " left" in progress[0]
    assert progress[-1].startswith("training (24 train + 8 val particles x 3 epochs): done, 96 in")
    history = pd.read_csv(tmp_path / "history.tsv", sep="\t")
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["gamma"].tolist() == pytest.approx([0.0, 4 / 3, 2.0], rel=1e-5)
    assert np.isfinite(history.drop(columns="epoch").to_numpy()).all()
    assert summary["epochs"] == 3 and summary["device"] == "cpu"
    assert summary["n_train"] == 24 and summary["n_val"] == 8
    assert summary["loss"] == pytest.approx(history["loss"].iloc[-1])
    assert not (tmp_path / "work" / RESUME_FILE).exists()  # a forced rerun starts afresh

    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    assert checkpoint["epoch"] == 3
    assert checkpoint["class_names"] == ["a", "b", "c"]
    assert checkpoint["model_config"]["channels"] == [4, 8]
    assert checkpoint["training_config"]["gamma"]["value"] == 2.0


def test_checkpoint_round_trip_reproduces_the_validation_loss(star, tmp_path):
    """The loaded model, alone, gives the last epoch's validation loss from the history."""
    run_training(star, tmp_path, epochs=2)
    history = pd.read_csv(tmp_path / "history.tsv", sep="\t")
    model, config, checkpoint = load_model(tmp_path / "model.pt")
    assert config == MODEL and not model.training
    table = particles.read_particle_table(star)
    val = select_split(table, "val")
    images = torch.from_numpy(particles.ParticleImages(table, star, 2).gather(val.rows))
    images = images.unsqueeze(1)
    with torch.no_grad():
        out = model(images)
        terms = avae_loss(
            out.reconstruction,
            images,
            out.mu,
            out.log_var,
            torch.from_numpy(val.labels),
            torch.from_numpy(AFFINITY).float(),
            history["beta"].iloc[-1],
            history["gamma"].iloc[-1],
        )
    assert terms.total.item() == pytest.approx(history["val_loss"].iloc[-1], rel=1e-4)
    assert terms.affinity.item() == pytest.approx(history["val_affinity"].iloc[-1], rel=1e-4)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_unseen_particles_never_enter_training(tmp_path):
    star = write_particles(tmp_path / "data", per_class=8, nan_unseen=True)
    summary = run_training(star, tmp_path / "run", epochs=2)
    history = pd.read_csv(tmp_path / "run" / "history.tsv", sep="\t")
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()
    assert summary["n_train"] + summary["n_val"] == 16  # the 8 unseen are not counted


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_test_particles_never_enter_training_or_model_selection(star, tmp_path):
    """Test rows with NaN images change nothing: the weights equal those of a run whose table
    lacks them, so neither the loss nor the checkpoint choice can have seen them."""
    table = particles.read_particle_table(star)
    test_rows = np.flatnonzero(table[particles.SPLIT].to_numpy() == "train")[::5]
    images = particles.open_stack(star.parent / "stack.mrcs", 2).copy()
    images[test_rows] = np.nan
    with_test = tmp_path / "with_test"
    with_test.mkdir()
    particles.write_stack(with_test / "stack.mrcs", images, 5.0)
    marked = table.copy()
    marked.loc[test_rows, particles.SPLIT] = "test"
    particles.write_particle_table(with_test / "particles.star", marked)
    without = tmp_path / "without_test"
    without.mkdir()
    particles.write_stack(without / "stack.mrcs", images, 5.0)
    particles.write_particle_table(without / "particles.star", table.drop(index=test_rows))

    summaries = [
        run_training(folder / "particles.star", folder / "run", epochs=2, seed=3)
        for folder in (with_test, without)
    ]
    assert summaries[0]["n_train"] == summaries[1]["n_train"] == 24 - len(test_rows)
    assert np.isfinite(summaries[0]["loss"])
    one, two = (
        torch.load(folder / "run" / "model.pt", weights_only=True)["state_dict"]
        for folder in (with_test, without)
    )
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_same_seed_same_weights(star, tmp_path):
    run_training(star, tmp_path / "one", epochs=2, seed=5)
    run_training(star, tmp_path / "two", epochs=2, seed=5)
    one = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["state_dict"]
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_data_held_in_memory_or_streamed_trains_the_same_weights(star, tmp_path):
    """The CPU streams batches from the stacks, CUDA holds them on the GPU: same training."""
    weights = []
    for resident in (False, True):
        table = particles.read_particle_table(star)
        out = tmp_path / str(resident)
        train_model(
            table,
            particles.ParticleImages(table, star, box_ndim=2),
            AFFINITY,
            MODEL,
            TrainingConfig(epochs=2, batch_size=8, device="cpu"),
            seed=3,
            checkpoint_path=out / "model.pt",
            history_path=out / "history.tsv",
            work_dir=out / "work",
            threads=1,
            resident=resident,
        )
        weights.append(torch.load(out / "model.pt", weights_only=True)["state_dict"])
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_inconsistent_inputs_are_refused(star, tmp_path):
    with pytest.raises(InputError, match="reconstruction_loss = 'bce' needs images in"):
        run_training(star, tmp_path, reconstruction_loss="bce")
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, box_ndim=2)
    with pytest.raises(InputError, match="affinity matrix covers 2 classes"):
        train_model(
            table,
            images,
            AFFINITY[:2, :2],
            MODEL,
            TrainingConfig(epochs=1),
            0,
            tmp_path / "m.pt",
            tmp_path / "h.tsv",
            tmp_path / "w",
        )
    with pytest.raises(InputError, match="box_size_px = 32"):
        train_model(
            table,
            images,
            AFFINITY,
            ModelConfig(ndim=2, box_size_px=32),
            TrainingConfig(epochs=1),
            0,
            tmp_path / "m.pt",
            tmp_path / "h.tsv",
            tmp_path / "w",
        )
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="training.device = 'cuda'"):
            train_model(
                table,
                images,
                AFFINITY,
                MODEL,
                TrainingConfig(epochs=1, device="cuda"),
                0,
                tmp_path / "m.pt",
                tmp_path / "h.tsv",
                tmp_path / "w",
            )


def test_a_resume_file_from_other_settings_is_ignored(star, tmp_path):
    (tmp_path / "work").mkdir()
    torch.save({"fingerprint": {"seed": -1}, "epoch": 1}, tmp_path / "work" / RESUME_FILE)
    summary = run_training(star, tmp_path, epochs=2)
    assert summary["resumed_from_epoch"] == 0


# --- crash and resume --------------------------------------------------------------------------

CHILD = """
import logging, sys, time
from pathlib import Path
sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]).parent)]
from test_run import run_training

class SlowEpochs(logging.Handler):
    '''Sleep after each epoch's log line so the parent can kill us mid-run.'''
    def emit(self, record):
        if record.getMessage().startswith("epoch"):
            time.sleep(0.4)

logger = logging.getLogger("cryoavae")
logger.setLevel(logging.INFO)
logger.addHandler(SlowEpochs())
run_training(Path(sys.argv[2]), Path(sys.argv[3]), epochs=6)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_killed_run_resumes_and_finishes_like_an_uninterrupted_one(star, tmp_path):
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(Path(__file__).parent), str(star), str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    resume = killed / "work" / RESUME_FILE
    deadline = time.monotonic() + 120
    while not resume.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert not (killed / "model.pt").exists()

    summary = run_training(star, killed, epochs=6)
    assert 1 <= summary["resumed_from_epoch"] < 6
    history = pd.read_csv(killed / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert torch.load(killed / "model.pt", weights_only=True)["epoch"] == 6

    run_training(star, fresh, epochs=6)
    reference = pd.read_csv(fresh / "history.tsv", sep="\t")
    losses = ["loss", "reconstruction", "kl", "affinity", "val_loss"]
    np.testing.assert_allclose(history[losses], reference[losses], rtol=1e-5)
    resumed = torch.load(killed / "model.pt", weights_only=True)["state_dict"]
    uninterrupted = torch.load(fresh / "model.pt", weights_only=True)["state_dict"]
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=1e-5, atol=1e-6)
    # the whole training's time, the epochs before the kill included (the history holds them)
    assert summary["train_seconds"] == pytest.approx(history["seconds"].sum(), rel=1e-6)
    assert summary["train_seconds"] > history["seconds"][summary["resumed_from_epoch"] :].sum()


class _StopAfter(logging.Handler):
    """Raises on the log line of epoch ``n``: a run cut off after the epoch-``n`` resume file."""

    def __init__(self, n: int, epochs: int):
        super().__init__()
        self.line = f"epoch {n}/{epochs}:"

    def emit(self, record):
        if record.getMessage().startswith(self.line):
            raise RuntimeError("cut off")


def test_cosine_schedule_anneals_per_epoch_and_resumes_on_the_same_curve(star, tmp_path):
    lr, fraction = 0.01, 0.1
    schedule = {"learning_rate": lr, "learning_rate_schedule": "cosine"}
    schedule["final_learning_rate_fraction"] = fraction
    run_training(star, tmp_path / "fresh", epochs=5, **schedule)
    fresh = pd.read_csv(tmp_path / "fresh" / "history.tsv", sep="\t")
    rates = fresh["learning_rate"].to_numpy()
    assert rates[0] == pytest.approx(lr) and rates[-1] == pytest.approx(lr * fraction)
    assert np.all(np.diff(rates) < 0)
    run_training(star, tmp_path / "flat", epochs=5, learning_rate=lr)
    flat = pd.read_csv(tmp_path / "flat" / "history.tsv", sep="\t")
    assert np.allclose(flat["learning_rate"], lr)

    stop = _StopAfter(3, 5)
    logger = logging.getLogger("cryoavae.train.run")
    level = logger.level
    logger.addHandler(stop)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(RuntimeError, match="cut off"):
            run_training(star, tmp_path / "cut", epochs=5, **schedule)
    finally:
        logger.removeHandler(stop)
        logger.setLevel(level)
    summary = run_training(star, tmp_path / "cut", epochs=5, **schedule)
    assert summary["resumed_from_epoch"] == 2  # the epoch-3 line raised before its resume file
    resumed = pd.read_csv(tmp_path / "cut" / "history.tsv", sep="\t")
    np.testing.assert_allclose(resumed["learning_rate"], rates, rtol=1e-12)
    np.testing.assert_allclose(resumed["val_loss"], fresh["val_loss"], rtol=1e-5)
