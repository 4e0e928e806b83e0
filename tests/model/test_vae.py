"""The model (cryoavae.model.vae): shapes, encode/decode, seeding, the circular pose, bf16
autocast, gradients to the pose head, and a few steps lowering the loss."""

import pytest
import torch

from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model
from cryoavae.train.losses import avae_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("decoder", ["cnn", "gaussian_splat"])
@pytest.mark.parametrize("ndim, box, pose_dims", [(2, 16, 1), (3, 12, 4), (2, 18, 0)])
def test_forward_shapes(decoder, ndim, box, pose_dims):
    config = ModelConfig(
        ndim=ndim,
        box_size_px=box,
        channels=(2, 4),
        pose_dims=pose_dims,
        decoder=decoder,
        n_gaussians=5,
        latent_dims=3,
    )
    model = build_model(config, seed=0)
    x = torch.randn(3, 1, *(box,) * ndim)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.mu.shape == out.log_var.shape == out.z.shape == (3, 3)
    assert out.pose.shape == (3, pose_dims)
    assert model(x[:, 0]).reconstruction.shape == x.shape  # no channel axis is fine too


def test_eval_forward_is_decode_of_encode():
    model = build_model(ModelConfig(ndim=2, box_size_px=16, channels=(2, 4), pose_dims=1), 0)
    model.eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        out = model(x)
        mu, _, pose, _ = model.encode(x)
        torch.testing.assert_close(out.reconstruction, model.decode(mu, pose))


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    config = ModelConfig(
        ndim=2, box_size_px=16, channels=(2, 4), decoder="gaussian_splat", pose_dims=1
    )
    state = torch.random.get_rng_state()
    a, b = build_model(config, 3), build_model(config, 3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    c = build_model(config, 4)
    assert not torch.equal(a.encoder.mu.weight, c.encoder.mu.weight)


def test_circular_pose_is_a_unit_vector():
    config = ModelConfig(
        ndim=2, box_size_px=16, channels=(2, 4), pose_dims=2, pose_encoding="circular"
    )
    pose = build_model(config, 0).encode(torch.randn(5, 16, 16)).pose
    torch.testing.assert_close(pose.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("decoder", ["cnn", "gaussian_splat"])
def test_bf16_autocast_forward_and_backward(decoder):
    """The CUDA path trains under bf16 autocast; CPU autocast exercises the same casts."""
    config = ModelConfig(ndim=3, box_size_px=16, channels=(4, 8), decoder=decoder)
    model = build_model(config, 0)
    x = torch.randn(4, 1, 16, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.randn(4, 8))
    terms = avae_loss(out.reconstruction, x, out.mu, out.log_var, None, None, 1.0, 0.0)
    terms.total.backward()
    assert terms.total.dtype == torch.float32 and torch.isfinite(terms.total)
    assert model.encoder.pose.weight.grad is not None


# --- learning ----------------------------------------------------------------------------------


def test_gradients_reach_the_pose_head():
    for decoder, ndim, pose_dims in [
        ("cnn", 2, 1),
        ("gaussian_splat", 2, 1),
        ("gaussian_splat", 3, 4),
        ("cnn", 3, 3),
    ]:
        config = ModelConfig(
            ndim=ndim,
            box_size_px=8,
            channels=(2, 4),
            pose_dims=pose_dims,
            decoder=decoder,
            n_gaussians=4,
        )
        model = build_model(config, 0)
        x = torch.randn(4, 1, *(8,) * ndim)
        out = model(x)
        terms = avae_loss(out.reconstruction, x, out.mu, out.log_var, None, None, 1.0, 0.0)
        terms.total.backward()
        grad = model.encoder.pose.weight.grad
        assert grad is not None and grad.abs().sum() > 0, (decoder, ndim)


def blobs(ndim: int, box: int, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, *box) Gaussian blobs near the box centre, in the low half of the last axis for
    label 0 and the high half for label 1."""
    n = len(labels)
    axes = torch.meshgrid(*[torch.arange(box, dtype=torch.float32)] * ndim, indexing="ij")
    grid = torch.stack(axes, -1)  # (*box, ndim)
    centres = box / 2 + (torch.rand(n, ndim, generator=gen) - 0.5) * box / 4
    centres[:, -1] += (labels.float() - 0.5) * box / 2
    d2 = ((grid[None] - centres.view(n, *(1,) * ndim, ndim)) ** 2).sum(-1)
    return torch.exp(-d2 / 4).unsqueeze(1)


@pytest.mark.parametrize("decoder", ["cnn", "gaussian_splat"])
@pytest.mark.parametrize("ndim, box, pose_dims", [(2, 16, 1), (3, 16, 4)])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(decoder, ndim, box, pose_dims):
    gen = torch.Generator().manual_seed(0)
    config = ModelConfig(
        ndim=ndim,
        box_size_px=box,
        channels=(4, 8),
        pose_dims=pose_dims,
        decoder=decoder,
        n_gaussians=16,
        latent_dims=4,
    )
    model = build_model(config, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    labels = torch.tensor([0, 1] * 4)
    x = blobs(ndim, box, labels, gen)
    affinity = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    eps = torch.zeros(8, 4)  # decode the mean: the loss is a deterministic function of weights
    losses, reconstruction = [], []
    for _ in range(25):
        out = model(x, eps)
        terms = avae_loss(out.reconstruction, x, out.mu, out.log_var, labels, affinity, 0.1, 1.0)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        losses.append(terms.total.item())
        reconstruction.append(terms.reconstruction.item())
    assert min(losses[-3:]) < 0.7 * losses[0]
    assert reconstruction[-1] < 0.9 * reconstruction[0]


@pytest.mark.parametrize("pooling", ["flatten", "global"])
def test_global_shape_pooling_keeps_mu_when_the_particle_moves(pooling):
    """A blob moved by one stride of the last level (8 voxels over three levels): global pooling
    gives the same mu (the feature maps move, their means and maxima do not); flattening does
    not, which is why it is an option."""
    config = ModelConfig(
        ndim=3, box_size_px=32, channels=(4, 8, 8), latent_dims=4, shape_pooling=pooling
    )
    model = build_model(config, 0).eval()
    z, y, x = torch.meshgrid(*[torch.arange(32.0)] * 3, indexing="ij")
    blob = torch.exp(-((x - 12) ** 2 + (y - 14) ** 2 / 2 + (z - 13) ** 2 / 3) / 4)
    moved = torch.roll(blob, 8, dims=2)  # +8 voxels along x
    with torch.no_grad():
        mu = model.encode(torch.stack([blob, moved])[:, None]).mu
    difference = (mu[0] - mu[1]).abs().max() / mu.abs().max()
    if pooling == "global":
        assert difference < 1e-5
    else:
        assert difference > 1e-2


def test_input_blur_is_a_normalised_gaussian_the_encoder_reads_first():
    from cryoavae.model.layers import GaussianBlur

    point = torch.zeros(1, 1, 17, 17, 17)
    point[0, 0, 8, 8, 8] = 1.0
    blurred = GaussianBlur(3, 1.5)(point)[0, 0]
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5)
    z, y, x = torch.meshgrid(*[torch.arange(17.0) - 8] * 3, indexing="ij")
    expected = torch.exp(-(x**2 + y**2 + z**2) / (2 * 1.5**2))
    torch.testing.assert_close(blurred, expected / expected.sum(), atol=2e-4, rtol=0)
    config = ModelConfig(ndim=3, box_size_px=16, channels=(4, 8), input_blur_px=1.0)
    assert isinstance(build_model(config, 0).encoder.features[0], GaussianBlur)
