"""Building blocks shared by the encoder and the decoders: the 2-D/3-D layer classes and the
sub-pixel upsampling layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    ``(n, 1, *box)``, as one 1-D convolution per axis (kernel out to 3 sd, zero padding)."""

    def __init__(self, ndim: int, sigma_px: float):
        super().__init__()
        self.ndim = ndim
        radius = max(1, math.ceil(3 * sigma_px))
        taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / sigma_px) ** 2)
        self.register_buffer("taps", taps / taps.sum(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convolve = F.conv2d if self.ndim == 2 else F.conv3d
        k = len(self.taps)
        for axis in range(self.ndim):
            shape = [1, 1] + [k if a == axis else 1 for a in range(self.ndim)]
            padding = [k // 2 if a == axis else 0 for a in range(self.ndim)]
            x = convolve(x, self.taps.to(x.dtype).view(shape), padding=padding)
        return x


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
