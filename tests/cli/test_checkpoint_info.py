"""`cryoavae info`: what a tiny trained model's checkpoint holds, what a resume file says, and
files that are no checkpoint refused in one line."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from particle_fixtures import BOX, write_particles

from cryoavae import particles
from cryoavae.cli import main
from cryoavae.cli.checkpoint_info import checkpoint_info
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model
from cryoavae.train import TrainingConfig, train_model
from cryoavae.train.checkpoints import run_fingerprint

MODEL = ModelConfig(ndim=2, box_size_px=BOX, channels=(4, 8), latent_dims=4, pose_dims=1)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny 2-D model trained 2 epochs, with its history and a metrics.json beside it."""
    root = tmp_path_factory.mktemp("model")
    star = write_particles(root / "particles")
    table = particles.read_particle_table(star)
    config = TrainingConfig(epochs=2, batch_size=8, device="cpu", gamma={"value": 0.0})
    train_model(
        table,
        particles.ParticleImages(table, star, box_ndim=2),
        np.eye(3),
        MODEL,
        config,
        seed=5,
        checkpoint_path=root / "model.pt",
        history_path=root / "history.tsv",
        work_dir=root / "work",
        threads=1,
    )
    (root / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "silhouette": None}))
    return root / "model.pt"


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def test_a_trained_model_says_what_it_is(trained, capsys):
    status, out, err = run(["info", str(trained)], capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{trained}: trained model, cryoavae 0.1.0"
    assert "classes (3): a, b, c" in lines  # its class list (c: held out of training)
    assert "epochs trained: 2, seed 5" in lines
    model = next(line for line in lines if line.startswith("model: "))
    assert "ndim 2, box_size_px 16, channels [4, 8], latent_dims 4" in model
    assert "parameters" in model
    assert any(line.startswith("training: epochs 2, batch_size 8") for line in lines)
    final = next(line for line in lines if line.startswith("final epoch ("))
    assert "history.tsv): loss " in final and "val_loss" in final
    assert f"metrics ({trained.parent / 'metrics.json'}): accuracy 0.75" in lines


def test_the_json_holds_the_same(trained, capsys):
    status, out, _ = run(["info", "--json", str(trained)], capsys)
    assert status == 0
    info = json.loads(out)
    assert info == json.loads(json.dumps(checkpoint_info(trained)))
    assert info["classes"] == ["a", "b", "c"] and info["epochs_trained"] == 2
    assert info["model"]["latent_dims"] == 4 and info["training"]["gamma"] == 0.0
    assert info["metrics"] == {"accuracy": 0.75}  # None scores left out
    assert set(info["final_losses"]) >= {"loss", "reconstruction", "kl", "val_loss"}


def test_a_model_moved_away_from_its_run_still_says_what_it_is(trained, tmp_path, capsys):
    alone = tmp_path / "shared.pt"
    alone.write_bytes(trained.read_bytes())
    info = checkpoint_info(alone)
    assert info["epochs_trained"] == 2 and "final_losses" not in info and "metrics" not in info


def test_a_resume_file_says_it_is_a_run_in_progress(tmp_path):
    model_dict = asdict(MODEL)
    training = asdict(TrainingConfig(epochs=10))
    resume = {
        "fingerprint": run_fingerprint(model_dict, training, 3, 40, 10),
        "history": [{"epoch": 1, "loss": 2.5, "val_loss": 2.75}],
        "epoch": 1,
        "state_dict": build_model(MODEL, 0).state_dict(),
    }
    torch.save(resume, tmp_path / "last.pt")
    info = checkpoint_info(tmp_path / "last.pt")
    assert info["kind"].startswith("resume file of a run in progress")
    assert info["epochs_trained"] == 1 and info["seed"] == 3
    assert info["training"]["epochs"] == 10
    assert info["final_losses"] == {"loss": 2.5, "val_loss": 2.75}


class Payload:
    """A pickled object, which a checkpoint never holds."""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "model checkpoint not found"),
        (b"not a checkpoint", "not a loadable checkpoint"),
        ("pickle", "refused: it holds pickled Python objects"),
        ({"weights": 1}, "not a cryoavae model checkpoint"),
    ],
)
def test_what_is_no_checkpoint_is_refused_in_one_line(content, expected, tmp_path, capsys):
    path = tmp_path / "model.pt"
    if content == "pickle":
        torch.save({"model_config": Payload()}, path, pickle_module=pickle)
    elif isinstance(content, dict):
        torch.save(content, path)
    elif content is not None:
        path.write_bytes(content)
    status, out, err = run(["info", str(path)], capsys)
    assert status == 1 and out == ""
    assert err.startswith(f"cryoavae info: error: {path}: ") and expected in err
    assert len(err.strip().splitlines()) == 1
