"""Building blocks shared by the encoder and the decoders: the 2-D/3-D layer classes and the
sub-pixel upsampling layer."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GaussianBlur", "SubpixelUpsample", "batch_norm", "conv", "conv_transpose"]


def conv(ndim: int) -> type[nn.Module]:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def conv_transpose(ndim: int) -> type[nn.Module]:
    return nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d


def batch_norm(ndim: int) -> type[nn.Module]:
    return nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d


class GaussianBlur(nn.Module):
    """A fixed Gaussian low pass of standard deviation ``sigma_px`` over the spatial axes of
    ``(n, 1, *box)``: the spectrum times ``exp(-2 pi^2 sigma^2 |k|^2)`` (circular at the box's
    edges, where z-scored particles are background). In Fourier space because a one-channel
    convolution with a long kernel takes a slow path on CPU (measured ~35x the encoder's first
    layer on a batch of 64 x 32^3; this is ~4x)."""

    def __init__(self, ndim: int, sigma_px: float):
        super().__init__()
        self.ndim, self.sigma_px = ndim, float(sigma_px)
        self._transfer: dict[tuple, torch.Tensor] = {}

    def transfer(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The low pass on the ``rfftn`` grid of ``shape`` (cached per shape and device)."""
        key = (shape, str(device))
        if key not in self._transfer:
            axes = [torch.fft.fftfreq(n, device=device) for n in shape[:-1]]
            axes.append(torch.fft.rfftfreq(shape[-1], device=device))
            k2 = sum(
                a.view([-1 if i == j else 1 for j in range(len(shape))]) ** 2
                for i, a in enumerate(axes)
            )
            self._transfer[key] = torch.exp(-2 * math.pi**2 * self.sigma_px**2 * k2)
        return self._transfer[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-self.ndim, 0))
        shape = tuple(x.shape[-self.ndim :])
        spectrum = torch.fft.rfftn(x.float(), dim=dims) * self.transfer(shape, x.device)
        return torch.fft.irfftn(spectrum, s=shape, dim=dims).to(x.dtype)


class SubpixelUpsample(nn.Module):
    """Double the grid: a stride-1 convolution makes ``2**ndim`` channels per output channel,
    one for each sub-voxel offset, which are then interleaved into a grid twice as fine
    ("pixel shuffle", Shi et al. 2016).

    It replaces the decoder's last transposed convolution: with one output channel at full
    resolution that layer was the slowest of the whole model on CPU (forward 3x slower than this,
    measured for 64 x 8 x 16^3 -> 64 x 1 x 32^3), and each output voxel here sees a 3^ndim input
    neighbourhood instead of 2^ndim.
    """

    def __init__(self, ndim: int, c_in: int, c_out: int):
        super().__init__()
        self.ndim, self.c_out = ndim, c_out
        self.conv = conv(ndim)(c_in, c_out * 2**ndim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (n, c_out * 2^ndim, *s)
        n, grid, d = y.shape[0], y.shape[2:], self.ndim
        y = y.view(n, self.c_out, *(2,) * d, *grid)  # (n, c, 2, 2[, 2], *s): offsets, then grid
        # interleave each grid axis with its offset axis: (n, c, s_0, 2, s_1, 2[, s_2, 2])
        order = [0, 1] + [a for i in range(d) for a in (2 + d + i, 2 + i)]
        return y.permute(order).reshape(n, self.c_out, *(2 * g for g in grid))
