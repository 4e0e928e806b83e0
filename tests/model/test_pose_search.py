"""Winner-takes-all orientation search: the offsets, the pose written back, and the search
finding an orientation the encoder missed by one offset."""

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from cryoavae.core.errors import InputError
from cryoavae.model.config import ModelConfig
from cryoavae.model.pose import pose_to_rotation, rotation_2d
from cryoavae.model.pose_search import best_orientation, offset_rotations, rotation_to_pose
from cryoavae.model.vae import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def random_rotations(n: int, seed: int) -> torch.Tensor:
    return torch.tensor(Rotation.random(n, random_state=seed).as_matrix(), dtype=torch.float32)


@pytest.mark.parametrize("ndim, k", [(2, 8), (3, 12), (3, 24), (3, 60)])
def test_offsets_are_a_closed_group_of_rotations_with_the_identity_first(ndim, k):
    g = offset_rotations(ndim, k).double()
    assert g.shape == (k, ndim, ndim)
    torch.testing.assert_close(g[0], torch.eye(ndim, dtype=torch.float64))
    torch.testing.assert_close(g @ g.transpose(1, 2), torch.eye(ndim).expand(k, -1, -1).double())
    assert torch.allclose(torch.linalg.det(g), torch.ones(k, dtype=torch.float64), atol=1e-6)
    products = (g[:, None] @ g[None]).reshape(-1, 1, ndim, ndim)
    distance = torch.linalg.matrix_norm(products - g[None]).min(1).values
    assert distance.max() < 1e-5  # every product is again an offset


def test_a_3d_offset_count_that_is_no_point_group_is_refused():
    with pytest.raises(ValueError, match="12, 24 or 60"):
        offset_rotations(3, 8)


def test_rotation_to_pose_inverts_pose_to_rotation():
    r3 = random_rotations(50, 0)
    torch.testing.assert_close(pose_to_rotation(rotation_to_pose(r3, 6), 3), r3, atol=1e-5, rtol=0)
    a = torch.linspace(-math.pi, math.pi, 37)
    r2 = rotation_2d(torch.stack([a.cos(), a.sin()], -1))
    torch.testing.assert_close(pose_to_rotation(rotation_to_pose(r2, 2), 2), r2, atol=1e-6, rtol=0)


def splat_model(ndim: int, k: int, box: int):
    config = ModelConfig(
        ndim=ndim,
        box_size_px=box,
        channels=(4, 8),
        latent_dims=4,
        pose_dims=2 if ndim == 2 else 6,
        pose_encoding="circular" if ndim == 2 else "rotation6d",
        decoder="gaussian_splat",
        n_gaussians=12,
        pose_hypotheses=k,
    )
    model = build_model(config, seed=3)
    with torch.no_grad():  # an asymmetric canonical particle: Gaussians spread out, unequal
        model.decoder.mlp[-1].weight.mul_(20)
    return model.eval()


@pytest.mark.parametrize("ndim, k, box", [(2, 8, 24), (3, 24, 16)])
def test_the_search_finds_the_orientation_the_encoder_missed_by_an_offset(ndim, k, box):
    model = splat_model(ndim, k, box)
    n = 6
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    if ndim == 2:
        a = torch.linspace(0.3, 5.0, n)
        truth = rotation_2d(torch.stack([a.cos(), a.sin()], -1))
    else:
        truth = random_rotations(n, 1)
    x = model.decoder.render(model.decoder.gaussians(z), truth)
    missed_by = torch.arange(1, n + 1) % k  # each guess is off by a different offset
    offsets = model.pose_offsets
    guess = truth @ offsets[missed_by].transpose(1, 2)  # truth = guess @ G_j
    pose = rotation_to_pose(guess, model.config.pose_dims)
    found = pose_to_rotation(best_orientation(model.decoder, z, pose, x, offsets), ndim)
    torch.testing.assert_close(found, truth, atol=1e-4, rtol=0)


def test_the_winning_pose_carries_the_encoders_gradient():
    model = splat_model(2, 8, 16).train()
    x = torch.randn(4, 1, 16, 16)
    out = model(x, eps=torch.zeros(4, 4))
    out.reconstruction.square().mean().backward()
    assert model.encoder.pose.weight.grad.abs().sum() > 0


def test_checkpoints_keep_their_keys_whatever_the_number_of_hypotheses():
    assert set(splat_model(3, 24, 16).state_dict()) == set(splat_model(3, 1, 16).state_dict())


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"ndim": 2, "pose_hypotheses": 8, "pose_dims": 2, "pose_encoding": "circular"}, "splat"),
        (
            {"ndim": 3, "pose_hypotheses": 8, "pose_dims": 6, "pose_encoding": "rotation6d"},
            "point group",
        ),
        ({"ndim": 2, "pose_dims": 6, "pose_encoding": "rotation6d"}, "rotation6d"),
        ({"ndim": 3, "pose_dims": 4, "pose_encoding": "rotation6d"}, "pose_dims = 6"),
    ],
)
def test_inconsistent_pose_search_settings_are_refused(kwargs, word):
    if "point group" in word:
        kwargs = {**kwargs, "decoder": "gaussian_splat"}
    with pytest.raises(InputError, match=word):
        ModelConfig(**kwargs)


def test_decoder_simulator_and_star_angles_share_one_convention(tmp_path):
    """The decoder turning its canonical particle by A makes what the simulator makes from the
    angles of A; the STAR angles written for A read back as A, and for S @ A as S @ A."""
    import numpy as np
    import pandas as pd
    import starfile

    from cryoavae.geometry.rotations import relion_angles_to_matrices
    from cryoavae.geometry.volume_rotation import rotate_volumes
    from cryoavae.inference.annotate import annotate_particles
    from cryoavae.inference.embed import inferred_angles

    model = splat_model(3, 1, 24)
    z = torch.randn(1, 4, generator=torch.Generator().manual_seed(5))
    gaussians = model.decoder.gaussians(z)
    a = random_rotations(1, 7)
    with torch.no_grad():
        canonical = model.decoder.render(gaussians, torch.eye(3)[None])[0, 0].numpy()
        decoded = model.decoder.render(gaussians, a)[0, 0].numpy()
    simulated = rotate_volumes(canonical, a.double().numpy())[0]  # the simulator's operation
    inside = np.indices(canonical.shape) - 12
    inside = (inside**2).sum(0) < 10**2  # trilinear sampling loses the corners
    assert np.corrcoef(decoded[inside], simulated[inside])[0, 1] > 0.99

    s = random_rotations(1, 8).double().numpy()
    rotations = np.concatenate([a.double().numpy(), s @ a.double().numpy()])
    angles = inferred_angles(rotations)
    latents = pd.DataFrame(
        {"image": ["1@p.mrcs", "2@p.mrcs"], "class_name": "c", "split": "train", "mu_0": 1.0}
    )
    latents = pd.concat([latents, angles], axis=1)
    starfile.write(
        {"particles": pd.DataFrame({"rlnImageName": latents["image"]})}, tmp_path / "p.star"
    )
    annotate_particles(tmp_path / "p.star", latents, latents, ["c"], tmp_path / "out.star")
    star = starfile.read(tmp_path / "out.star")
    back = relion_angles_to_matrices(
        star[["cryoavaeAngleRot", "cryoavaeAngleTilt", "cryoavaeAnglePsi"]].to_numpy()
    )
    np.testing.assert_allclose(back[0], rotations[0], atol=1e-5)
    np.testing.assert_allclose(back[1] @ back[0].T, s[0], atol=1e-5)  # changed by exactly S
