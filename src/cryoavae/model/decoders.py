"""The two decoders: ``[z, pose]`` -> image.

The CNN decoder reads the pose as just more input; the Gaussian-splat decoder renders a
canonical particle from ``z`` alone and turns it by the pose's rotation
(:func:`cryoavae.model.pose.pose_to_rotation`), so its pose must mean orientation. Conventions
(axes, box centre, rotation direction) are those of :mod:`cryoavae.model.vae`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cryoavae.geometry.translation import moved_tensor
from cryoavae.model.config import ModelConfig
from cryoavae.model.layers import SubpixelUpsample, batch_norm, conv_transpose
from cryoavae.model.pose import pose_to_rotation
from cryoavae.model.splats import render_gaussians

__all__ = ["CNNDecoder", "GaussianSplatDecoder", "Gaussians"]


class Gaussians(NamedTuple):
    """A canonical particle as isotropic Gaussians (before any rotation)."""

    centres_px: torch.Tensor  # (n, g, ndim) as (x, y[, z]), voxels from the box centre
    sigmas_px: torch.Tensor  # (n, g)
    weights: torch.Tensor  # (n, g)


class CNNDecoder(nn.Module):
    """``[z, pose]`` -> linear -> stride-2 transposed convolutions mirroring the encoder, the last
    level a :class:`SubpixelUpsample` to one channel.

    Each level doubles the feature map; when the box is not a multiple of ``2**levels`` the
    result is cropped to the box.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        s, c_last = config.feature_size_px, config.channels[-1]
        self.start_shape = (c_last,) + (s,) * config.ndim
        self.fc = nn.Linear(config.latent_dims + config.pose_dims, c_last * s**config.ndim)
        widths = list(reversed(config.channels))  # e.g. 32 -> 16 -> 8, then -> 1
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            conv = conv_transpose(config.ndim)
            layers.append(conv(c_in, c_out, 4, stride=2, padding=1, bias=not config.batch_norm))
            if config.batch_norm:
                layers.append(batch_norm(config.ndim)(c_out))
            layers.append(nn.ReLU(inplace=True))
        layers.append(SubpixelUpsample(config.ndim, widths[-1], 1))
        self.layers = nn.Sequential(*layers)

    def forward(
        self, z: torch.Tensor, pose: torch.Tensor, shift_px: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``shift_px`` ``(n, ndim)`` (voxels, ``(x, y[, z])``; None: as decoded) moves the
        decoded particle as a Fourier phase, the box wrapping round: the particle is decoded
        centred and compared where it was picked."""
        h = F.relu(self.fc(torch.cat([z, pose], -1)))  # (n, c_last * s^ndim)
        h = h.view(-1, *self.start_shape)  # (n, c_last, s, s[, s])
        out = self.layers(h)  # (n, 1, s * 2^levels, ...)
        box = self.config.box_size_px
        if out.shape[-1] != box:
            out = out[(..., *(slice(0, box),) * self.config.ndim)]
        if shift_px is not None:
            out = moved_tensor(out, shift_px)
        return out


class GaussianSplatDecoder(nn.Module):
    """``z`` -> a mixture of isotropic Gaussians -> rotated by the pose -> rendered on the grid.

    ``z`` sets every Gaussian's centre, width and weight; the pose only rotates the centres (an
    isotropic Gaussian is unchanged by rotation about its own centre), so the rendered density is
    exactly the unrotated one turned by ``pose_to_rotation(pose)`` about the box centre. The
    parts are separate (:meth:`gaussians`, :meth:`render`) so that one canonical particle can be
    rendered in several orientations (:mod:`cryoavae.model.pose_search`).
    """

    hidden = 128

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        g, d = config.n_gaussians, config.ndim
        self.mlp = nn.Sequential(
            nn.Linear(config.latent_dims, self.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden, g * (d + 2)),
        )
        self.half_extent_px = config.box_size_px / 2
        self.min_sigma_px = 0.5
        self.offset = nn.Parameter(torch.zeros(1))
        with torch.no_grad():  # start with Gaussians spread over the box, about 2 px wide at 32
            bias = self.mlp[-1].bias.view(g, d + 2)
            bias[:, :d] = torch.atanh(torch.empty(g, d).uniform_(-0.7, 0.7))
            sigma0 = max(config.box_size_px / 16, 1.0) - self.min_sigma_px
            bias[:, d] = math.log(math.expm1(sigma0))  # inverse softplus
            bias[:, d + 1] = 0.0
            self.mlp[-1].weight.mul_(0.1)

    def gaussians(self, z: torch.Tensor) -> Gaussians:
        """The canonical particle of each ``z`` ``(n, latent_dims)``."""
        n, d = z.shape[0], self.config.ndim
        params = self.mlp(z).view(n, self.config.n_gaussians, d + 2).float()  # (n, g, d + 2)
        centres = torch.tanh(params[..., :d]) * self.half_extent_px  # (n, g, d) as (x, y[, z])
        sigmas = F.softplus(params[..., d]) + self.min_sigma_px  # (n, g)
        return Gaussians(centres, sigmas, params[..., d + 1])

    def render(
        self,
        gaussians: Gaussians,
        rotation: torch.Tensor,
        half: bool = False,
        shift_px: torch.Tensor | None = None,
    ):
        """``gaussians`` turned by ``rotation`` ``(n, d, d)``, moved by ``shift_px`` ``(n, d)``
        (voxels, ``(x, y[, z])``; None: centred) and rendered ``(n, 1, *box)``.

        ``half``: on a grid of half the box, voxel ``j`` covering voxels ``2j, 2j + 1`` of the full
        one (what ``avg_pool`` of the full box gives): a cheap image to compare orientations on.
        """
        centres = gaussians.centres_px @ rotation.float().transpose(1, 2)  # rows c -> (R c)
        if shift_px is not None:
            centres = centres + shift_px.float()[:, None, :]
        sigmas, box = gaussians.sigmas_px, self.config.box_size_px
        if half:  # full-box position p is half-box position (p - 1/2) / 2 from its centre
            centres, sigmas, box = (centres - 0.5) / 2, sigmas / 2, box // 2
        image = render_gaussians(centres, sigmas, gaussians.weights, box)
        return (image + self.offset).unsqueeze(1)

    def forward(
        self, z: torch.Tensor, pose: torch.Tensor, shift_px: torch.Tensor | None = None
    ) -> torch.Tensor:
        rotation = pose_to_rotation(pose.float(), self.config.ndim)  # (n, d, d)
        return self.render(self.gaussians(z), rotation, shift_px=shift_px)
