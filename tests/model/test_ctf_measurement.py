"""The CTF in the model's forward model: a rendering is filtered exactly as the simulator filters
a particle of the same defocus (on the full grid and on the pose search's half grid), the search
through each particle's CTF finds the orientation that rendered it, and a model that measures the
CTF refuses to go on without each particle's defocus."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryoavae.core.errors import InputError
from cryoavae.geometry.ctf import CtfModel, ctf_radial_table, frequency_squared_index
from cryoavae.geometry.rotations import geodesic_deg
from cryoavae.model.config import ModelConfig
from cryoavae.model.measurement import Measurement
from cryoavae.model.pose import pose_to_rotation
from cryoavae.model.pose_search import best_orientation, rotation_to_pose
from cryoavae.model.vae import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
MICROSCOPE = {"voxel_size_angstrom": 10.0, "voltage_kv": 300.0, "cs_mm": 2.7}


def simulator_filter(volumes: np.ndarray, voxel: float, defocus_um: np.ndarray) -> np.ndarray:
    """What the simulator does to a particle: its spectrum times the CTF table's lookup."""
    d = volumes.shape[-1]
    table = ctf_radial_table(d, voxel, defocus_um)[:, frequency_squared_index(d)]
    spectra = np.fft.rfftn(volumes, axes=(-3, -2, -1)) * table[:, None]
    return np.fft.irfftn(spectra, s=(d,) * 3, axes=(-3, -2, -1))


def test_a_rendering_is_filtered_as_the_simulator_filters_a_particle_of_that_defocus():
    volumes = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    defocus = np.array([2.0, 3.1, 4.0])
    measure = Measurement(16, None, CtfModel(**MICROSCOPE))
    out = measure(volumes, torch.from_numpy(defocus))
    expected = simulator_filter(volumes.numpy(), 10.0, defocus)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-4)
    # the half grid has voxels twice the size: the same physical frequencies
    half = measure(volumes[..., :8, :8, :8], torch.from_numpy(defocus))
    expected = simulator_filter(volumes[..., :8, :8, :8].numpy(), 20.0, defocus)
    np.testing.assert_allclose(half.numpy(), expected, atol=2e-4)
    # a different defocus is a different filter (the test sees a CTF that ignored its particle)
    other = measure(volumes, torch.from_numpy(defocus[::-1].copy()))
    assert (other[0] - out[0]).abs().max() > 0.1


def test_the_wedge_and_the_ctf_are_applied_together():
    volumes = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    defocus = torch.tensor([2.5, 3.5])
    both = Measurement(16, 50.0, CtfModel(**MICROSCOPE))(volumes, defocus)
    in_turn = Measurement(16, 50.0)(Measurement(16, None, CtfModel(**MICROSCOPE))(volumes, defocus))
    torch.testing.assert_close(both, in_turn, atol=1e-5, rtol=0)


def ctf_model(k=24, box=16, voxel=10.0):
    config = ModelConfig(
        ndim=3, box_size_px=box, channels=(4, 8), latent_dims=4, pose_dims=6,
        pose_encoding="rotation6d", decoder="gaussian_splat", n_gaussians=12,
        pose_hypotheses=k, measure_ctf=True,
        microscope={**MICROSCOPE, "voxel_size_angstrom": voxel},
    )  # fmt: skip
    model = build_model(config, seed=3)
    with torch.no_grad():  # an asymmetric canonical particle: Gaussians spread out, unequal
        model.decoder.mlp[-1].weight.mul_(20)
    return model.eval()


def test_the_search_through_each_particles_ctf_finds_the_orientation_that_rendered_it():
    # 3 Å voxels and 4-6 um: several CTF zeros inside the box's band, so a search that ignores
    # the CTF, or gives a particle another's, turns most particles wrong (measured: 6 and 7 of 16)
    model = ctf_model(voxel=3.0)
    n = 16
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    defocus = torch.linspace(4.0, 6.0, n)
    truth = torch.tensor(Rotation.random(n, random_state=1).as_matrix(), dtype=torch.float32)
    x = model.measure(model.decoder.render(model.decoder.gaussians(z), truth), defocus)
    offsets = model.pose_offsets
    guess = truth @ offsets[torch.arange(1, n + 1) % 24].transpose(1, 2)
    pose = rotation_to_pose(guess, 6)

    def right(measure, focus) -> int:
        found = best_orientation(model.decoder, z, pose, x, offsets, measure, None, focus)
        error = geodesic_deg(pose_to_rotation(found, 3).double().numpy(), truth.double().numpy())
        return int((error < 1.0).sum())

    assert right(model.measure, defocus) == n
    assert right(None, None) <= n // 2 and right(model.measure, defocus.flip(0)) <= n // 2


def test_the_decoder_output_stays_whole_and_the_reconstruction_carries_the_ctf():
    model = ctf_model(k=1)
    x = torch.randn(2, 1, 16, 16, 16)
    out = model(x, defocus_um=torch.tensor([2.0, 4.0]))
    decoded = model.decode(out.mu, out.pose)  # the density itself, no CTF
    expected = simulator_filter(decoded.detach().numpy(), 10.0, np.array([2.0, 4.0]))
    np.testing.assert_allclose(out.reconstruction.detach().numpy(), expected, atol=2e-4)


def test_a_model_that_measures_the_ctf_needs_the_microscope_and_each_defocus():
    with pytest.raises(InputError, match="measure_ctf needs 3-D particles with a simulated CTF"):
        ModelConfig(ndim=3, box_size_px=16, measure_ctf=True)
    with pytest.raises(InputError, match="model.microscope = .*; expected voxel_size_angstrom"):
        ModelConfig(ndim=3, box_size_px=16, measure_ctf=True, microscope={"voltage": 300.0})
    with pytest.raises(ValueError, match="the CTF needs each particle's defocus"):
        ctf_model(k=1)(torch.randn(2, 1, 16, 16, 16))
