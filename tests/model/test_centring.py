"""Reading a particle again from where the encoder's shift head places it (model.centring_passes)
and the torch shift that moves it (cryoavae.geometry.translation.moved_tensor)."""

import numpy as np
import pytest
import torch

from cryoavae.core.errors import InputError
from cryoavae.geometry.translation import moved, moved_tensor
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_moved_tensor_moves_as_the_numpy_shift_does_and_by_whole_voxels_as_a_roll():
    rng = np.random.default_rng(0)
    volumes = rng.random((3, 12, 12, 12), dtype=np.float32)
    shifts = rng.normal(0, 2, (3, 3))
    torch.testing.assert_close(
        moved_tensor(torch.from_numpy(volumes)[:, None], torch.from_numpy(shifts))[:, 0],
        torch.from_numpy(moved(volumes, shifts)),
        atol=1e-5,
        rtol=0,
    )
    image = torch.from_numpy(rng.random((1, 1, 10, 10), dtype=np.float32))
    out = moved_tensor(image, torch.tensor([[2.0, -3.0]]))  # (x, y) on array axes (y, x)
    torch.testing.assert_close(out, torch.roll(image, (-3, 2), (2, 3)), atol=1e-5, rtol=0)


def centring_model(passes: int):
    config = ModelConfig(
        ndim=3,
        box_size_px=16,
        channels=(4, 8),
        pose_dims=6,
        pose_encoding="rotation6d",
        decoder="gaussian_splat",
        translation_px=3.0,
        centring_passes=passes,
    )
    return build_model(config, 0).eval()


def test_each_pass_reads_the_particle_moved_by_the_shift_so_far_and_refines_it():
    model = centring_model(2)
    with torch.no_grad():
        model.encoder.shift.weight.normal_(0, 0.05)  # a head that says something
        x = torch.randn(4, 1, 16, 16, 16)
        first = model.encoder(x)
        second = model.encoder(moved_tensor(x, -first.shift_px))
        shift = first.shift_px + second.shift_px
        third = model.encoder(moved_tensor(x, -shift))
        encoding = model.encode(x)
    assert first.shift_px.abs().max() > 0.1  # the passes have somewhere to move the particle
    torch.testing.assert_close(encoding.mu, third.mu)
    torch.testing.assert_close(encoding.shift_px, shift + third.shift_px)
    assert not torch.allclose(encoding.mu, first.mu, atol=1e-4)


def test_centring_without_a_shift_head_is_refused():
    with pytest.raises(InputError, match="centring_passes needs the encoder's shift"):
        ModelConfig(ndim=3, box_size_px=16, decoder="gaussian_splat", centring_passes=1)


def test_the_shift_error_compares_the_head_on_a_moved_particle_with_its_answer_plus_the_move():
    model = centring_model(0)
    with torch.no_grad():
        model.encoder.shift.weight.normal_(0, 0.05)
        x = torch.randn(3, 1, 16, 16, 16)
        delta = torch.tensor([[1.0, 0.0, -0.5], [0.0, 0.0, 0.0], [-1.0, 0.5, 0.25]])
        out = model(x, shift_delta=delta)
        here = model.encoder(x).shift_px
        there = model.encoder(moved_tensor(x, delta)).shift_px
    expected = (there - here - delta).square().sum(1).mean()
    torch.testing.assert_close(out.shift_error, expected)
    assert out.shift_error > 0.01  # an untrained head is not equivariant
    assert model(x).shift_error is None
    no_head = build_model(ModelConfig(ndim=3, box_size_px=16, channels=(4, 8)), 0)
    assert no_head(x, shift_delta=delta).shift_error is None


def test_a_moved_read_blurs_and_moves_in_one_product_as_moving_then_blurring_would():
    config = ModelConfig(
        ndim=3, box_size_px=16, channels=(4, 8), translation_px=3.0, input_blur_px=1.0
    )
    encoder = build_model(config, 0).eval().encoder
    x = torch.randn(3, 1, 16, 16, 16)
    shift = torch.tensor([[0.7, -1.2, 2.0], [0.0, 0.0, 0.0], [-2.5, 0.3, -0.4]])
    spectrum = encoder.input_spectrum(x)
    with torch.no_grad():
        shared = encoder(x, moved_by=shift, spectrum=spectrum)
        apart = encoder(moved_tensor(x, shift))  # moved, then the blur layer reads it
        unmoved = encoder(x, spectrum=spectrum)
    torch.testing.assert_close(shared.mu, apart.mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.shift_px, apart.shift_px, atol=1e-5, rtol=0)
    torch.testing.assert_close(unmoved.mu, encoder(x).mu, atol=1e-5, rtol=0)
    assert not torch.allclose(shared.mu, unmoved.mu, atol=1e-3)  # the move reached the read
    plain = build_model(ModelConfig(ndim=3, box_size_px=16, channels=(4, 8)), 0).eval().encoder
    assert plain.input_spectrum(x) is None  # nothing to share: no blur, no shift head
    with torch.no_grad():  # yet a moved read still moves
        torch.testing.assert_close(
            plain(x, moved_by=shift).mu, plain(moved_tensor(x, shift)).mu, atol=1e-5, rtol=0
        )
