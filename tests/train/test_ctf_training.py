"""Training a model that measures the CTF: each batch is compared through its own particles'
defocus (the table's rlnDefocusU), and a table without one is refused in one line."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from particle_fixtures import train_two_epochs, write_3d_particles

from cryoavae import particles
from cryoavae.core.errors import InputError
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import AffinityVAE
from cryoavae.particles.batches import select_split

pytestmark = pytest.mark.usefixtures("one_thread")
BOX = 8
AFFINITY = np.array([[1.0, 0.2], [0.2, 1.0]])
MODEL = ModelConfig(
    ndim=3, box_size_px=BOX, channels=(4, 8), latent_dims=2, pose_dims=0, measure_ctf=True,
    microscope={"voxel_size_angstrom": 10.0, "voltage_kv": 300.0, "cs_mm": 2.7},
)  # fmt: skip


def _train(star: Path, out: Path) -> pd.DataFrame:
    return train_two_epochs(star, out, MODEL, AFFINITY)


def test_each_batch_is_measured_at_its_own_particles_defocus(tmp_path):
    # the same particles and seed: only the recorded defocus differs, and with it the loss
    spread = np.linspace(2e4, 4e4, 24)
    near = _train(write_3d_particles(tmp_path / "near", BOX, spread), tmp_path / "a")
    again = _train(write_3d_particles(tmp_path / "again", BOX, spread), tmp_path / "b")
    far = _train(write_3d_particles(tmp_path / "far", BOX, spread[::-1].copy()), tmp_path / "c")
    losses = ["loss", "reconstruction", "val_loss"]
    pd.testing.assert_frame_equal(near[losses], again[losses])
    assert not np.allclose(near["reconstruction"], far["reconstruction"])


def test_the_split_reads_each_particles_defocus_in_micrometres(tmp_path):
    star = write_3d_particles(tmp_path, BOX, np.linspace(2e4, 4e4, 24))
    val = select_split(particles.read_particle_table(star), "val")
    np.testing.assert_allclose(val.defocus_um, np.linspace(2.0, 4.0, 24)[val.rows])


@pytest.mark.parametrize("defocus", [None, 0.0])
def test_a_table_without_each_particles_defocus_is_refused_in_one_line(tmp_path, defocus):
    star = write_3d_particles(tmp_path / "data", BOX, defocus)
    with pytest.raises(InputError, match=r"model.measure_ctf needs each particle's defocus") as e:
        _train(star, tmp_path / "out")
    assert "\n" not in str(e.value)


def test_each_particle_reaches_the_model_with_its_own_defocus(tmp_path, monkeypatch):
    # particle i is the constant volume i with defocus 2 + 0.1 i um: every (image, defocus) pair
    # the model sees, in training and validation, must be a row's own
    n = 24
    star = write_3d_particles(tmp_path / "data", BOX, 2e4 + 1e3 * np.arange(n))
    ids = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n,) + (BOX,) * 3)
    particles.write_stack(star.parent / "stack.mrcs", np.ascontiguousarray(ids), 10.0)
    seen = []
    forward = AffinityVAE.forward

    def recording(self, x, eps=None, shift_delta=None, defocus_um=None):
        seen.append((x[:, 0, 0, 0, 0].detach().clone(), defocus_um.detach().clone()))
        return forward(self, x, eps, shift_delta, defocus_um)

    monkeypatch.setattr(AffinityVAE, "forward", recording)
    _train(star, tmp_path / "out")
    images = torch.cat([image for image, _ in seen])
    defocus = torch.cat([focus for _, focus in seen])
    assert len(images) == 2 * n  # two epochs of train and val rows, each once
    torch.testing.assert_close(defocus, 2.0 + 0.1 * images)
