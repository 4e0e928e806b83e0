"""Model: config checks, shapes, the splat decoder's placement and rotation direction, memory,
gradients to the pose head, and a few steps lowering the loss."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cryoavae.errors import InputError
from cryoavae.layers import SubpixelUpsample
from cryoavae.losses import avae_loss
from cryoavae.model import ModelConfig, build_model
from cryoavae.rotations import pose_to_rotation
from cryoavae.splats import render_gaussians

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_from_dict_makes_tuples_and_refuses_unknown_keys():
    config = ModelConfig.from_dict({"channels": [4, 8], "ndim": 2, "box_size_px": 16})
    assert config.channels == (4, 8)
    with pytest.raises(InputError, match="unknown key 'latent_dim'"):
        ModelConfig.from_dict({"latent_dim": 4})


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"ndim": 3, "pose_encoding": "circular", "pose_dims": 2}, "circular"),
        ({"ndim": 2, "pose_encoding": "circular", "pose_dims": 1}, "circular"),
        ({"ndim": 2, "decoder": "gaussian_splat", "pose_dims": 4}, "pose_dims"),
        ({"ndim": 3, "decoder": "gaussian_splat", "pose_dims": 2}, "pose_dims"),
        ({"box_size_px": 8, "channels": (4, 4, 4, 4)}, "channels"),
        ({"decoder": "mlp"}, "decoder"),
    ],
)
def test_inconsistent_configs_are_refused(kwargs, word):
    with pytest.raises(InputError, match=word):
        ModelConfig(**kwargs)


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
        mu, _, pose = model.encode(x)
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


# --- Gaussian splatting -----------------------------------------------------------------------


def test_render_places_a_gaussian_at_the_expected_voxel():
    box, c = 16, 8  # the box centre is voxel box // 2
    image = render_gaussians(
        torch.tensor([[[3.0, -2.0]]]), torch.tensor([[1.0]]), torch.tensor([[2.0]]), box
    )
    assert image.shape == (1, box, box)
    assert divmod(int(image[0].argmax()), box) == (c - 2, c + 3)  # (row y, column x)
    assert image.max().item() == pytest.approx(2.0)
    volume = render_gaussians(
        torch.tensor([[[3.0, -2.0, 1.0]]]), torch.tensor([[1.5]]), torch.tensor([[1.0]]), box
    )
    z, rest = divmod(int(volume[0].argmax()), box * box)
    assert (z, *divmod(rest, box)) == (c + 1, c - 2, c + 3)  # (z, y, x)
    # value at a neighbour one voxel away in x: exp(-1 / (2 * 1.5^2))
    assert volume[0, c + 1, c - 2, c + 4].item() == pytest.approx(math.exp(-1 / 4.5), rel=1e-5)


def test_render_chunks_do_not_change_the_result():
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(2, 7, 3, generator=gen) * 8 - 4
    sigmas = torch.rand(2, 7, generator=gen) + 0.5
    weights = torch.randn(2, 7, generator=gen)
    whole = render_gaussians(centres, sigmas, weights, 10)
    chunked = render_gaussians(centres, sigmas, weights, 10, max_chunk_elements=2 * 10 * 10)
    torch.testing.assert_close(whole, chunked)


def test_render_runs_in_float32_under_autocast():
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(2, 30, 3, generator=gen) * 3
    sigmas, weights = torch.rand(2, 30, generator=gen) + 1, torch.randn(2, 30, generator=gen)
    small_chunks = 2 * 8 * 8 * 7  # five chunks of 7 Gaussians
    reference = render_gaussians(centres, sigmas, weights, 8, small_chunks)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = render_gaussians(centres, sigmas, weights, 8, small_chunks)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, reference)


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


def single_gaussian_decoder(ndim: int, pose_dims: int, centre: tuple[float, ...], box: int = 16):
    """A splat model whose decoder draws one Gaussian of sigma 1 at ``centre`` whatever z is."""
    config = ModelConfig(
        ndim=ndim,
        box_size_px=box,
        channels=(2,),
        pose_dims=pose_dims,
        decoder="gaussian_splat",
        n_gaussians=1,
        latent_dims=2,
        pose_encoding="circular" if pose_dims == 2 else "vector",
    )
    model = build_model(config, 0)
    last = model.decoder.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        half = box / 2
        bias = [math.atanh(v / half) for v in centre]
        bias += [math.log(math.expm1(1.0 - model.decoder.min_sigma_px)), 1.0]
        last.bias.copy_(torch.tensor(bias))
    return model


def peak_voxel(image: torch.Tensor) -> tuple[int, ...]:
    """Index of the maximum of ``(1, 1, *box)`` as a tuple of array indices."""
    flat = int(image.argmax())
    shape = image.shape[2:]
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def test_splat_positive_2d_angle_turns_plus_x_towards_plus_y():
    c = 8
    model = single_gaussian_decoder(2, 1, (4.0, 0.0))
    z = torch.zeros(1, 2)
    with torch.no_grad():
        assert peak_voxel(model.decode(z, torch.zeros(1, 1))) == (c, c + 4)  # (y, x)
        # +90 degrees: +x goes to +y, i.e. from right of centre to below it (larger row)
        assert peak_voxel(model.decode(z, torch.tensor([[math.pi / 2]]))) == (c + 4, c)
        assert peak_voxel(model.decode(z, torch.tensor([[math.pi]]))) == (c, c - 4)


def test_splat_circular_pose_follows_a_full_turn():
    c = 8
    config_model = single_gaussian_decoder(2, 2, (4.0, 0.0))
    z = torch.zeros(1, 2)
    with torch.no_grad():
        for degrees, expected in [
            (0, (c, c + 4)),
            (90, (c + 4, c)),
            (180, (c, c - 4)),
            (270, (c - 4, c)),
        ]:
            a = math.radians(degrees)
            pose = torch.tensor([[math.cos(a), math.sin(a)]])
            assert peak_voxel(config_model.decode(z, pose)) == expected


def test_splat_3d_rotations_follow_the_right_hand_rule():
    c, s = 8, math.sqrt(0.5)
    z = torch.zeros(1, 2)
    quaternion = single_gaussian_decoder(3, 4, (4.0, 0.0, 0.0))
    with torch.no_grad():
        assert peak_voxel(quaternion.decode(z, torch.zeros(1, 4))) == (c, c, c + 4)  # (z, y, x)
        # +90 degrees about +z, (w, x, y, z) = (cos 45, 0, 0, sin 45); pose = q - identity
        pose = torch.tensor([[s - 1, 0.0, 0.0, s]])
        assert peak_voxel(quaternion.decode(z, pose)) == (c, c + 4, c)  # x -> y
    axis_angle = single_gaussian_decoder(3, 3, (0.0, 4.0, 0.0))
    with torch.no_grad():
        # +90 degrees about +x: y -> z
        pose = torch.tensor([[math.pi / 2, 0.0, 0.0]])
        assert peak_voxel(axis_angle.decode(z, pose)) == (c + 4, c, c)


def test_rotation_helpers_agree_and_are_rotations():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(6, 3, generator=gen)
    r = pose_to_rotation(v, 3)
    torch.testing.assert_close(
        r @ r.transpose(1, 2), torch.eye(3).expand(6, 3, 3), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(6))
    # the same rotation as a quaternion: (cos t/2, sin t/2 * axis)
    t = v.norm(dim=1, keepdim=True)
    q = torch.cat([torch.cos(t / 2), torch.sin(t / 2) * v / t], 1)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(pose_to_rotation(q - identity, 3), r, atol=1e-5, rtol=0)
    # zero rotation vector: identity with finite gradients
    zero = torch.zeros(1, 3, requires_grad=True)
    pose_to_rotation(zero, 3).sum().backward()
    assert torch.isfinite(zero.grad).all()


SPLAT_MEMORY_SCRIPT = """
import torch
from cryoavae.splats import render_gaussians
torch.set_num_threads(1)
def status_mb(key):  # VmRSS: now; VmHWM: peak of this process image (ru_maxrss is not:
    for line in open("/proc/self/status"):  # it keeps the parent's peak across fork + exec)
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
def rss_mb():
    return status_mb("VmRSS")
def peak_mb():
    return status_mb("VmHWM")
gen = torch.Generator().manual_seed(0)
centres = torch.rand(32, 256, 3, generator=gen) * 40 - 20
sigmas = torch.rand(32, 256, generator=gen) * 2 + 1
weights = torch.randn(32, 256, generator=gen)
base = rss_mb()
with torch.no_grad():
    out = render_gaussians(centres, sigmas, weights, 64)
forward = peak_mb() - base
del out
for t in (centres, sigmas, weights):
    t.requires_grad_()
render_gaussians(centres, sigmas, weights, 64).square().sum().backward()
print(forward, peak_mb() - base)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_splat_peak_memory_64_cube_256_gaussians_batch_32():
    """Peak memory above the baseline stays under 160 MB for the forward pass and 400 MB for
    forward and backward (measured ~110 and ~280). The output alone is 32 MiB; one unchunked
    (32, 256, 64^3) temporary would be 8 GiB."""
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SPLAT_MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    forward_mb, training_mb = map(float, result.stdout.split())
    assert forward_mb < 160
    assert training_mb < 400


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


@pytest.mark.parametrize("ndim", [2, 3])
def test_subpixel_upsample_interleaves_offsets(ndim):
    """Channel k of the convolution lands at sub-voxel offset k (row-major over the axes)."""
    up = SubpixelUpsample(ndim, 1, 1)
    with torch.no_grad():
        up.conv.weight.zero_()
        up.conv.bias.copy_(torch.arange(2.0**ndim))
    out = up(torch.zeros(1, 1, *(3,) * ndim))
    assert out.shape == (1, 1, *(6,) * ndim)
    block = out[(0, 0, *(slice(2, 4),) * ndim)]  # the 2^ndim voxels from input voxel 1
    torch.testing.assert_close(block.flatten(), torch.arange(2.0**ndim))
