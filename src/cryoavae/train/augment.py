"""Training-time turns of subtomograms that the microscope could equally have recorded.

A turn by 180 degrees about x, y or z reverses two axes of the voxel grid about voxel ``d // 2``
(the centre every map and particle of the package uses): index ``i`` goes to ``-i`` modulo ``d``,
exact, with no interpolation (only the face plane ``i = 0``, which a turn about the centre would
push out of the box, stays where it is). In Fourier space the turn reverses the same two axes,
which maps a missing wedge about y (beam along z) onto itself. Mirror images (one axis
reversed) are not used: they change a molecule's handedness.
"""

from __future__ import annotations

import torch

__all__ = ["AUGMENTATIONS", "wedge_turns"]

AUGMENTATIONS = ("none", "wedge_turns")
# (n, 1, z, y, x): the axes each turn reverses; turn 0 is the identity
_REVERSED = {1: (3, 4), 2: (2, 4), 3: (2, 3)}  # about z, about y, about x


def wedge_turns(x: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    """``x`` ``(n, 1, d, d, d)`` with particle ``i`` turned by ``turn[i]`` (0 none, 1 about z,
    2 about y, 3 about x; 180 degrees each). One flip per kind of turn, not per particle."""
    if x.ndim != 5:
        raise ValueError(
            f"wedge_turns: expected (n, 1, d, d, d) volumes, got shape {tuple(x.shape)}"
        )
    turn = turn.to(x.device)
    out = x.clone()
    for kind, dims in _REVERSED.items():
        rows = torch.nonzero(turn == kind).flatten()
        if len(rows):
            out[rows] = torch.roll(torch.flip(x[rows], dims), (1, 1), dims)  # i -> -i mod d
    return out
