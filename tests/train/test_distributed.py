"""Data-parallel training on two CPU processes (gloo), launched by torchrun as the rule does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from particle_fixtures import write_particles

from cryoavae.train.launch import TrainingJob

pytestmark = pytest.mark.slow
CLASSES = ["a", "b", "c"]
MODEL = {"channels": [4, 8], "latent_dims": 4, "pose_dims": 1}


@pytest.fixture(scope="module")
def star(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("particles")
    path = write_particles(root, per_class=44)  # 66 train particles: one full batch of 64
    (root / "prior.csv").write_text("a,b,c\n1,0.3,0.6\n0.3,1,-0.2\n0.6,-0.2,1\n")
    return path


def job(
    star: Path, out: Path, devices: int, epochs: int = 3, model=None, **training
) -> TrainingJob:
    settings = {"epochs": epochs, "batch_size": 64, "device": "cpu", "devices": devices}
    return TrainingJob(
        particles=str(star),
        affinity=str(star.parent / "prior.csv"),
        class_names=CLASSES,
        model=model or MODEL,
        training={**settings, "checkpoint_every_epochs": 1, **training},
        seed=3,
        checkpoint=str(out / "model.pt"),
        history=str(out / "history.tsv"),
        summary=str(out / "summary.json"),
        work_dir=str(out / "checkpoints"),
        threads=2,
        log=str(out / "train.log"),
    )


LAUNCH = """
import json, sys
from cryoavae.train.launch import TrainingJob, launch
launch(TrainingJob(**json.loads(sys.argv[1])))
"""


def run(training_job: TrainingJob, check: bool = True) -> subprocess.Popen:
    """The job in a fresh process, as the rule script runs it."""
    Path(training_job.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, json.dumps(asdict(training_job))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a kill reaches torchrun and its ranks
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if check:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-4000:]
    return process


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["state_dict"]


def test_two_ranks_of_32_match_one_rank_of_64(star, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(job(star, one, devices=1))
    run(job(star, two, devices=2))
    a = pd.read_csv(one / "history.tsv", sep="\t")
    b = pd.read_csv(two / "history.tsv", sep="\t")
    terms = ["loss", "reconstruction", "kl", "affinity", "val_loss", "val_affinity"]
    # the same objective, summed in another order: the curves agree to float32 rounding
    np.testing.assert_allclose(b[terms], a[terms], rtol=2e-4, atol=1e-6)
    for name, tensor in weights(one).items():
        torch.testing.assert_close(weights(two)[name], tensor, rtol=2e-3, atol=2e-5)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["epochs"] == 3
    log = (two / "train.log").read_text()
    assert "rank 0 of 2" in log and "rank 1" not in log.split("rank 0 of 2")[0]
    assert sorted(p.name for p in two.iterdir()) == sorted(
        ["checkpoints", "history.tsv", "model.pt", "summary.json", "train.log"]
    )


def test_the_same_seed_gives_the_same_result_on_the_same_number_of_ranks(star, tmp_path):
    run(job(star, tmp_path / "first", devices=2, epochs=2))
    run(job(star, tmp_path / "second", devices=2, epochs=2))
    for name, tensor in weights(tmp_path / "first").items():
        assert torch.equal(weights(tmp_path / "second")[name], tensor), name


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.parametrize("resume_on", [2, 1])
def test_a_killed_two_rank_run_resumes_on_any_number_of_ranks(star, tmp_path, resume_on):
    out = tmp_path / "run"
    epochs = 150  # ~0.05 s each here: long enough to be killed in the middle
    slow = {"epochs": epochs}
    process = run(job(star, out, devices=2, **slow), check=False)
    resume = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if resume.exists() and (out / "history.tsv").exists():
            if len(pd.read_csv(out / "history.tsv", sep="\t")) >= 2:
                break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and torchrun; the ranks follow them
    process.wait(timeout=60)
    written = (out / "history.tsv").read_text()
    time.sleep(2.0)
    assert (out / "history.tsv").read_text() == written, "a rank outlived the kill"
    assert not (out / "model.pt").exists(), "finished before the kill: make the run longer"
    run(job(star, out, devices=resume_on, **slow))
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= summary["resumed_from_epoch"] < epochs and summary["ranks"] == resume_on
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    assert torch.load(out / "model.pt", weights_only=True)["epoch"] == epochs
    assert not resume.exists()


def test_batch_norm_on_two_cpu_ranks_trains_and_says_its_statistics_are_per_rank(star, tmp_path):
    run(job(star, tmp_path, devices=2, epochs=1, model={**MODEL, "batch_norm": True}))
    log = (tmp_path / "train.log").read_text()
    assert "each normalises by the statistics of its own piece of the batch" in log
    assert (tmp_path / "model.pt").exists()
