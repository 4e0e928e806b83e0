"""What a tilt series measures of a volume: its Fourier components outside the missing wedge.

A subtomogram lacks the double wedge of frequencies the tilt range never sampled
(:func:`cryoavae.geometry.wedge.missing_wedge_mask`: tilt axis y, beam z), in the frame of the
tomogram, whatever the particle's orientation. A decoder that renders the whole particle is
compared with data that lack that wedge: under a squared error the rendering's power inside the
wedge counts as error, and how much power falls there depends on the orientation, so the loss
and the pose search prefer orientations that hide the particle's power in the wedge rather than
the true one. Masking the rendering as the data are masked (the constrained correlation of
subtomogram averaging) compares only what was measured.
"""

from __future__ import annotations

import torch
from torch import nn

from cryoavae.geometry.wedge import missing_wedge_mask


class WedgeMeasurement(nn.Module):
    """Volumes ``(..., d, d, d)`` -> the same volumes with the missing wedge of a tilt series
    through ``+-tilt_max_deg`` about y removed (for a box of ``d`` and of ``d // 2``, the pose
    search's half-size grid)."""

    def __init__(self, box_size_px: int, tilt_max_deg: float):
        super().__init__()
        for name, size in (("full", box_size_px), ("half", box_size_px // 2)):
            mask = torch.from_numpy(missing_wedge_mask(size, tilt_max_deg)).float()
            self.register_buffer(f"mask_{name}", mask, persistent=False)

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        d = volumes.shape[-1]
        mask = self.mask_full if d == self.mask_full.shape[0] else self.mask_half
        if mask.shape[0] != d:
            raise ValueError(f"WedgeMeasurement: no mask for a box of {d}")
        spectrum = torch.fft.rfftn(volumes.float(), dim=(-3, -2, -1))
        out = torch.fft.irfftn(spectrum * mask, s=(d, d, d), dim=(-3, -2, -1))
        return out.to(volumes.dtype)
