"""training.shift_equivariance: the term that teaches the encoder's shift head where a particle
sits is in the loss that training minimises, and training with it makes the head follow a moved
particle better than the reconstruction alone does."""

from pathlib import Path

import numpy as np
import pytest
import torch
from particle_fixtures import BOX, write_particles

from cryoavae import particles
from cryoavae.geometry.translation import moved_tensor
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import load_model
from cryoavae.train import TrainingConfig, train_model

pytestmark = pytest.mark.usefixtures("one_thread")


SPLAT = ModelConfig(
    ndim=2,
    box_size_px=BOX,
    channels=(4, 8),
    latent_dims=4,
    pose_dims=2,
    pose_encoding="circular",
    decoder="gaussian_splat",
    n_gaussians=8,
    translation_px=3.0,
)
AFFINITY = np.array([[1.0, 0.3, 0.6], [0.3, 1.0, -0.2], [0.6, -0.2, 1.0]])


def head_error(checkpoint: Path, images: torch.Tensor) -> float:
    """Mean square miss (px^2) of the head on the particles moved by offsets as in training."""
    model, _, _ = load_model(checkpoint)
    delta = 2 * torch.rand((len(images), 2), generator=torch.Generator().manual_seed(1)) - 1
    with torch.no_grad():
        here = model.encoder(images).shift_px
        there = model.encoder(moved_tensor(images, delta)).shift_px
    return float((there - here - delta).square().sum(1).mean())


def test_training_with_the_term_makes_the_head_follow_a_moved_particle(tmp_path, caplog):
    star = write_particles(tmp_path / "particles", per_class=24)
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, box_ndim=2)
    rows = np.flatnonzero(table["cryoavaeSplit"].to_numpy() == "train")  # what training saw
    stack = torch.from_numpy(np.stack([images[i] for i in rows])).float()[:, None]
    errors = {}
    warned = {}
    for weight in (0.0, 5.0):
        out = tmp_path / f"w{weight}"
        caplog.clear()
        train_model(
            table,
            images,
            AFFINITY,
            SPLAT,
            TrainingConfig(
                epochs=25,
                batch_size=8,
                learning_rate=0.01,
                device="cpu",
                shift_equivariance=weight,
            ),
            seed=0,
            checkpoint_path=out / "model.pt",
            history_path=out / "history.tsv",
            work_dir=out / "work",
            threads=1,
        )
        errors[weight] = head_error(out / "model.pt", stack)
        warned[weight] = "without training.shift_equivariance" in caplog.text
    assert errors[5.0] < 0.5 * errors[0.0], errors  # measured: 0.03 against 0.61 px^2
    assert warned == {0.0: True, 5.0: False}  # the risk is named where it is taken
