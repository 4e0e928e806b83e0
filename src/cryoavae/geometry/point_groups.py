"""Point groups as sets of rotations: one home for the molecule's symmetry and for the model's
search offsets.

A point group is named as in the field (``C1``, ``C<n>``, ``D<n>``, ``T``, ``O``, ``I``) and
returned as its rotation matrices in scipy's standard orientation (the n-fold axis along z).
:mod:`cryoavae.structures.symmetry` places a group in a map's own frame; evaluation counts
symmetry copies as equivalent; the model's pose search uses the 12, 24 or 60 rotations of
``T``, ``O`` or ``I`` as offsets (:data:`GROUP_ORDERS_3D`).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["GROUP_ORDERS_3D", "symmetry_group"]

#: The 3-D point groups whose rotations spread evenly over SO(3), by their number of elements.
GROUP_ORDERS_3D = {12: "T", 24: "O", 60: "I"}


def symmetry_group(name: str | np.ndarray | None) -> np.ndarray:
    """The rotations ``(k, 3, 3)`` of a point group (``C1``, ``C<n>``, ``D<n>``, ``T``, ``O``,
    ``I``; None is ``C1``), in scipy's standard orientation (the n-fold axis along z); an array
    of rotations (a group already placed in a map's frame, :mod:`cryoavae.structures.symmetry`)
    is returned as it is."""
    if isinstance(name, np.ndarray):
        return np.asarray(name, dtype=np.float64).reshape(-1, 3, 3)

    name = (name or "C1").upper()
    return Rotation.create_group(name).as_matrix()
