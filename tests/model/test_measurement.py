"""The missing-wedge forward model: the mask removes exactly the wedge, the model's
reconstruction is compared as measured, and the pose search on wedged particles finds the
orientation a model with the wedge rendered would."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryoavae.core.errors import InputError
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.model.config import ModelConfig
from cryoavae.model.measurement import Measurement
from cryoavae.model.pose import pose_to_rotation
from cryoavae.model.pose_search import best_orientation, rotation_to_pose
from cryoavae.model.vae import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_measurement_removes_the_wedge_and_keeps_the_rest():
    volumes = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    measured = Measurement(16, 50.0)(volumes)
    before = np.fft.rfftn(volumes.numpy(), axes=(-3, -2, -1))
    after = np.fft.rfftn(measured.numpy(), axes=(-3, -2, -1))
    keep = missing_wedge_mask(16, 50.0)
    assert np.abs(after[..., ~keep]).max() < 1e-4
    np.testing.assert_allclose(after[..., keep], before[..., keep], atol=1e-4)
    half = Measurement(16, 50.0)(volumes[..., :8, :8, :8])  # the search's half grid
    assert (
        np.abs(
            np.fft.rfftn(half.numpy(), axes=(-3, -2, -1))[..., ~missing_wedge_mask(8, 50.0)]
        ).max()
        < 1e-4
    )


def wedge_model(tilt, k=24, box=16):
    config = ModelConfig(
        ndim=3, box_size_px=box, channels=(4, 8), latent_dims=4, pose_dims=6,
        pose_encoding="rotation6d", decoder="gaussian_splat", n_gaussians=12,
        pose_hypotheses=k, wedge_tilt_max_deg=tilt,
    )  # fmt: skip
    model = build_model(config, seed=3)
    with torch.no_grad():  # an asymmetric canonical particle: Gaussians spread out, unequal
        model.decoder.mlp[-1].weight.mul_(20)
    return model.eval()


def test_the_reconstruction_is_what_the_tilt_series_would_measure():
    model = wedge_model(45.0, k=1)
    out = model(torch.randn(2, 1, 16, 16, 16))
    spectrum = np.fft.rfftn(out.reconstruction.detach().numpy(), axes=(-3, -2, -1))
    assert np.abs(spectrum[..., ~missing_wedge_mask(16, 45.0)]).max() < 1e-4
    decoded = model.decode(out.mu)  # the canonical particle itself stays whole
    assert np.abs(np.fft.rfftn(decoded.detach().numpy(), axes=(-3, -2, -1))).max() > 1e-2


def test_the_search_on_wedged_particles_finds_the_orientation_that_rendered_them():
    model = wedge_model(45.0)
    n = 8
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    truth = torch.tensor(Rotation.random(n, random_state=1).as_matrix(), dtype=torch.float32)
    x = model.measure(model.decoder.render(model.decoder.gaussians(z), truth))
    offsets = model.pose_offsets
    guess = truth @ offsets[torch.arange(1, n + 1) % 24].transpose(1, 2)
    pose = rotation_to_pose(guess, 6)
    found = best_orientation(model.decoder, z, pose, x, offsets, model.measure)
    torch.testing.assert_close(pose_to_rotation(found, 3), truth, atol=1e-4, rtol=0)


def test_a_wedge_on_2d_images_is_refused():
    with pytest.raises(InputError, match="needs 3-D subtomograms"):
        ModelConfig(ndim=2, box_size_px=16, wedge_tilt_max_deg=60.0)
    with pytest.raises(InputError, match="measure_wedge needs the particles' missing wedge"):
        ModelConfig(ndim=3, box_size_px=16, measure_wedge=True)
