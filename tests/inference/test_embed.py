"""Embedding: the latents table's columns and values, open-set tables, shape mismatches."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from cryoavae import particles
from cryoavae.core.errors import InputError
from cryoavae.inference import embed
from cryoavae.inference.embed import centre_guess_px, embed_particles
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import load_model
from cryoavae.orientation.templates import OrientationConfig
from cryoavae.train import TrainingConfig, train_model

BOX = 12
MODEL = ModelConfig(
    ndim=2, box_size_px=BOX, channels=(4, 8), latent_dims=3, pose_dims=2, pose_encoding="circular"
)


pytestmark = pytest.mark.usefixtures("one_thread")


def write_particles(root: Path, names: list[str], splits: list[str], box: int = BOX) -> Path:
    """One noisy image per entry; class numbers follow first appearance of each name."""
    rng = np.random.default_rng(1)
    numbers = {name: k + 1 for k, name in enumerate(dict.fromkeys(names))}
    table = pd.DataFrame(
        {
            particles.IMAGE: [particles.image_reference(i, "s.mrcs") for i in range(len(names))],
            particles.CLASS_NUMBER: [numbers[n] for n in names],
            "rlnAngleRot": rng.uniform(0, 360, len(names)),
            "rlnAngleTilt": rng.uniform(0, 180, len(names)),
            "rlnAnglePsi": rng.uniform(0, 360, len(names)),
            particles.CLASS_NAME: names,
            particles.SPLIT: splits,
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    images = rng.standard_normal((len(names), box, box)).astype(np.float32)
    particles.write_stack(root / "s.mrcs", images, 4.0)
    particles.write_particle_table(root / "particles.star", table)
    return root / "particles.star"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embed")
    star = write_particles(root / "data", ["a", "b"] * 6, ["train"] * 10 + ["val"] * 2)
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, 2)
    train_model(
        table,
        images,
        np.eye(2),
        MODEL,
        TrainingConfig(epochs=1, batch_size=4),
        0,
        root / "model.pt",
        root / "history.tsv",
        root / "work",
        threads=1,
    )
    return root / "model.pt"


def test_latents_table_columns_and_values(checkpoint, tmp_path):
    names = ["a", "b", "zz", "a", "zz"]  # "zz" is a class the model never saw
    star = write_particles(tmp_path, names, ["train", "val", "unseen", "train", "unseen"])
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, 2)
    latents = embed_particles(checkpoint, table, images, batch_size=2)
    assert list(latents.columns) == [
        "image",
        "class_name",
        "class_number",
        "split",
        "angle_rot",
        "angle_tilt",
        "angle_psi",
        "mu_0",
        "mu_1",
        "mu_2",
        "pose_0",
        "pose_1",
    ]
    assert latents["image"].tolist() == table[particles.IMAGE].tolist()
    assert latents["class_name"].tolist() == names
    assert latents["class_number"].tolist() == [1, 2, 3, 1, 3]
    assert latents["split"].tolist() == ["train", "val", "unseen", "train", "unseen"]
    np.testing.assert_allclose(latents["angle_tilt"], table["rlnAngleTilt"])

    model, _, _ = load_model(checkpoint)
    with torch.no_grad():
        mu, _, pose, _ = model.encode(torch.from_numpy(images.gather(np.arange(5))))
    np.testing.assert_allclose(latents[["mu_0", "mu_1", "mu_2"]], mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(latents[["pose_0", "pose_1"]], pose.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.hypot(latents["pose_0"], latents["pose_1"]), 1.0, rtol=1e-5)


def test_images_of_another_box_are_refused(checkpoint, tmp_path):
    star = write_particles(tmp_path, ["a", "b"], ["train", "val"], box=16)
    table = particles.read_particle_table(star)
    with pytest.raises(InputError, match="expects"):
        embed_particles(checkpoint, table, particles.ParticleImages(table, star, 2))


def test_missing_checkpoint_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_the_centre_guess_is_the_encoders_shift_in_voxels_only_when_asked():
    """``orientation.centre_from: shift_head`` hands the matcher the encoder's shifts (Å in the
    table, voxels for the matcher); the default hands it nothing; a table without shifts (a
    model without a head) is refused in one line."""
    images = SimpleNamespace(voxel_size_angstrom=10.0)
    shifts = {"inferred_shift_x_angstrom": [5.0, -10.0], "inferred_shift_y_angstrom": [0.0, 2.0]}
    encoded = pd.DataFrame({**shifts, "inferred_shift_z_angstrom": [-3.0, 1.0]})
    asked = OrientationConfig.from_dict({"max_shift_angstrom": 30.0, "centre_from": "shift_head"})
    guess = centre_guess_px(encoded, asked, images)
    np.testing.assert_allclose(guess, [[0.5, 0.0, -0.3], [-1.0, 0.2, 0.1]])
    default = OrientationConfig.from_dict({"max_shift_angstrom": 30.0})
    assert centre_guess_px(encoded, default, images) is None
    with pytest.raises(InputError, match="needs a model with a shift head"):
        centre_guess_px(pd.DataFrame(shifts), asked, images)


@pytest.mark.parametrize("templates", [0, 3])
def test_the_templates_come_from_the_classes_unless_a_number_of_kmeans_centres_is_asked(
    templates, monkeypatch
):
    """``orientation.templates: 0`` hands the train particles' class names to the references
    (one template per class); a number asks for that many k-means centres and no labels."""
    seen = {}

    def fake_fit(model, mu, train, n_templates, *rest):
        seen["train"], seen["n"], seen["labels"] = train, n_templates, rest[-1]

    monkeypatch.setattr(embed, "fit_references", fake_fit)
    encoded = pd.DataFrame(
        {"mu_0": [0.0, 1.0, 2.0], "class_name": ["a", "b", "a"], "split": ["train", "val", "train"]}
    )
    orientation = OrientationConfig.from_dict(
        {"method": "template_matching", "templates": templates}
    )
    embed.fit_study_references(
        None, encoded, pd.DataFrame(index=range(3)), None, orientation, 0, None
    )
    np.testing.assert_array_equal(seen["train"], [0, 2])
    if templates:
        assert seen["n"] == 3 and seen["labels"] is None
    else:
        assert list(seen["labels"]) == ["a", "a"]
