"""Training-time turns (training.augment: wedge_turns) and the deeper encoder
(model.convs_per_level): exact turns that keep the wedge, reproducible training, clear errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from particle_fixtures import train_two_epochs, write_3d_particles

from cryoavae import particles
from cryoavae.core.errors import InputError
from cryoavae.geometry.volume_rotation import rotate_volumes
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model
from cryoavae.train.augment import wedge_turns

pytestmark = pytest.mark.usefixtures("one_thread")
BOX = 8
AFFINITY = np.array([[1.0, 0.2], [0.2, 1.0]])
ANGLES = {"rlnAngleRot": 0.0, "rlnAngleTilt": 0.0, "rlnAnglePsi": 0.0}
TURNS = [np.diag(d) for d in ([1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1])]  # (x, y, z)


def test_each_turn_is_the_180_degree_rotation_about_the_box_centre():
    volume = np.random.default_rng(0).standard_normal((BOX,) * 3).astype(np.float32)
    turned = wedge_turns(torch.from_numpy(np.stack([volume] * 4))[:, None], torch.arange(4))
    for k, matrix in enumerate(TURNS):
        expected = rotate_volumes(volume, matrix[None])[0]  # trilinear at whole voxels: exact
        inside = (slice(1, None),) * 3  # the face planes i = 0 leave the box under the rotation
        np.testing.assert_allclose(turned[k, 0].numpy()[inside], expected[inside], atol=1e-6)


def test_a_turned_particle_keeps_its_missing_wedge_empty():
    d = 16
    wedge_kept = missing_wedge_mask(d, 60.0, rfft=False)  # True where measured
    noise = np.random.default_rng(1).standard_normal((d,) * 3)
    volume = np.fft.ifftn(np.fft.fftn(noise) * wedge_kept).real.astype(np.float32)
    turned = wedge_turns(torch.from_numpy(np.stack([volume] * 4))[:, None], torch.arange(4))
    for k in range(4):
        power = np.abs(np.fft.fftn(turned[k, 0].numpy())) ** 2
        assert power[~wedge_kept].sum() < 1e-8 * power[wedge_kept].sum()


def _train(star: Path, out: Path, model: ModelConfig, **training) -> pd.DataFrame:
    return train_two_epochs(star, out, model, AFFINITY, **training)


def test_training_with_turns_is_seeded_and_differs_from_training_without(tmp_path):
    star = write_3d_particles(tmp_path / "data", BOX)
    model = ModelConfig(ndim=3, box_size_px=BOX, channels=(4, 8), latent_dims=2, pose_dims=0)
    plain = _train(star, tmp_path / "plain", model)
    turned = _train(star, tmp_path / "turned", model, augment="wedge_turns")
    again = _train(star, tmp_path / "again", model, augment="wedge_turns")
    losses = ["loss", "reconstruction", "kl", "affinity", "val_loss"]
    pd.testing.assert_frame_equal(turned[losses], again[losses])
    assert not np.allclose(plain["loss"], turned["loss"])


def test_turns_of_2d_images_are_refused_in_one_line(tmp_path):
    star = tmp_path / "particles.star"
    rows = [
        {
            particles.IMAGE: particles.image_reference(i, "stack.mrcs"),
            particles.CLASS_NUMBER: 1 + i % 2,
            particles.CLASS_NAME: "ab"[i % 2],
            particles.SPLIT: "val" if i % 4 == 0 else "train",
            **ANGLES,
        }
        for i in range(8)
    ]
    particles.write_stack(tmp_path / "stack.mrcs", np.zeros((8, BOX, BOX), np.float32), 10.0)
    particles.write_particle_table(star, pd.DataFrame(rows))
    model = ModelConfig(ndim=2, box_size_px=BOX, channels=(4,), latent_dims=2, pose_dims=0)
    with pytest.raises(InputError, match="training.augment = 'wedge_turns' turns subtomograms"):
        _train(star, tmp_path / "out", model, augment="wedge_turns")


def test_a_deeper_encoder_keeps_the_feature_size_and_adds_size_keeping_convolutions():
    shallow = ModelConfig(ndim=3, box_size_px=16, channels=(4, 8), latent_dims=3, pose_dims=0)
    deep = ModelConfig(
        ndim=3, box_size_px=16, channels=(4, 8), latent_dims=3, pose_dims=0, convs_per_level=2
    )
    convs = [
        [m for m in build_model(c, seed=0).encoder.features if isinstance(m, torch.nn.Conv3d)]
        for c in (shallow, deep)
    ]
    assert [m.stride[0] for m in convs[0]] == [2, 2]
    assert [m.stride[0] for m in convs[1]] == [2, 1, 2, 1]
    x = torch.randn(2, 1, 16, 16, 16)
    assert build_model(deep, seed=0).encoder(x).mu.shape == (2, 3)
