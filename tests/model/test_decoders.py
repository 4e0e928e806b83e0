"""Decoders (cryoavae.model.decoders) and their layers (cryoavae.model.layers): the splat
decoder turns its Gaussians by the pose in the documented direction, in 2-D and 3-D, and the
sub-pixel upsampling puts each channel at its offset."""

import math

import pytest
import torch

from cryoavae.geometry.translation import moved_tensor
from cryoavae.model.config import ModelConfig
from cryoavae.model.layers import SubpixelUpsample
from cryoavae.model.pose import pose_to_rotation
from cryoavae.model.vae import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_splat_shift_moves_the_turned_particle_by_x_y_z_voxels():
    """A shift is applied after the rotation, in (x, y, z) voxels: +x is the last array axis."""
    c = 8
    model = single_gaussian_decoder(3, 3, (3.0, 0.0, 0.0))
    z = torch.zeros(1, 2)
    quarter_about_z = torch.tensor([[0.0, 0.0, math.pi / 2]])  # +x turns to +y
    gaussians = model.decoder.gaussians(z)
    rotation = pose_to_rotation(quarter_about_z, 3)
    with torch.no_grad():
        centred = model.decoder.render(gaussians, rotation)
        moved = model.decoder.render(gaussians, rotation, shift_px=torch.tensor([[1.0, 0, -2]]))
    assert peak_voxel(centred) == (c, c + 3, c)  # (z, y, x)
    assert peak_voxel(moved) == (c - 2, c + 3, c + 1)
    torch.testing.assert_close(moved, torch.roll(centred, (-2, 1), (2, 4)), atol=1e-5, rtol=0)


def test_encoder_shift_stays_within_translation_px_and_the_cnn_decoder_moves_its_output_by_it():
    config = ModelConfig(
        ndim=3,
        box_size_px=16,
        channels=(4, 8),
        pose_dims=6,
        pose_encoding="rotation6d",
        decoder="gaussian_splat",
        translation_px=2.5,
    )
    model = build_model(config, 0)
    with torch.no_grad():
        model.encoder.shift.weight.normal_(0, 10.0)  # drive the head far into saturation
        encoding = model.encode(torch.randn(5, 1, 16, 16, 16))
    assert encoding.shift_px.shape == (5, 3)
    assert encoding.shift_px.abs().max() <= 2.5 and encoding.shift_px.abs().max() > 1.0
    assert (
        build_model(ModelConfig(ndim=3, box_size_px=16), 0)
        .encode(torch.randn(2, 1, 16, 16, 16))
        .shift_px
        is None
    )
    cnn = build_model(ModelConfig(ndim=3, box_size_px=16, channels=(4, 8), translation_px=2.0), 0)
    z, pose = torch.randn(2, cnn.config.latent_dims), torch.randn(2, cnn.config.pose_dims)
    shift = torch.tensor([[1.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(
            cnn.decoder(z, pose, shift), moved_tensor(cnn.decoder(z, pose), shift)
        )
        centred = cnn.decoder(z, pose)
        rolled = torch.roll(centred[0], (-2, 1), (1, 3))  # x + 1, z - 2 on axes (z, y, x)
        torch.testing.assert_close(cnn.decoder(z, pose, shift)[0], rolled, atol=1e-5, rtol=0)
