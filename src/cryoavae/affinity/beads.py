"""A coarse-grained bead model of a structure: k-means beads of its atoms.

Local SOAP environments of C-alpha atoms at a shape-sized cutoff cost one SOAP centre per
residue; beads of ``atoms_per_bead`` atoms (8 C-alphas: about 10 Å apart in a folded protein)
keep the shape at an eighth of the centres. The beads depend only on the atoms' geometry, never
on their order in the file or the frame, so a rotated and translated copy of a structure gets the
same beads rotated and translated (what the SOAP prior's rigid-copy test needs).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: Lloyd iterations after the farthest-point start; the beads move < 0.1 Å after ~10 on proteins.
LLOYD_ITERATIONS = 15


def farthest_point_indices(positions: np.ndarray, k: int) -> np.ndarray:
    """Indices (k,) of ``k`` atoms spread as far apart as possible, greedily.

    Starts at the atom nearest the centroid (a choice no rotation, translation or permutation of
    the atoms changes, barring exact ties), then adds the atom farthest from all chosen ones.
    One vectorised distance update per bead.
    """
    n = len(positions)
    k = min(max(int(k), 1), n)
    centre = positions.mean(axis=0)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = int(np.argmin(((positions - centre) ** 2).sum(axis=1)))
    nearest = ((positions - positions[chosen[0]]) ** 2).sum(axis=1)  # (n,) squared distance
    for i in range(1, k):
        chosen[i] = int(np.argmax(nearest))
        nearest = np.minimum(nearest, ((positions - positions[chosen[i]]) ** 2).sum(axis=1))
    return chosen


def bead_model(positions: np.ndarray, atoms_per_bead: int) -> np.ndarray:
    """Bead positions (k, 3), k = round(n / atoms_per_bead) (at least 1): k-means of the atoms.

    positions: (n, 3) Å. Farthest-point start, then :data:`LLOYD_ITERATIONS` Lloyd steps (each
    atom to its nearest bead, each bead to the mean of its atoms; a bead left without atoms stays
    where it is).
    """
    positions = np.asarray(positions, dtype=np.float64)
    k = max(1, int(round(len(positions) / max(int(atoms_per_bead), 1))))
    beads = positions[farthest_point_indices(positions, k)].copy()
    for _ in range(LLOYD_ITERATIONS):
        owner = cKDTree(beads).query(positions)[1]  # (n,) index of the nearest bead
        counts = np.bincount(owner, minlength=k)
        sums = np.zeros_like(beads)
        np.add.at(sums, owner, positions)
        filled = counts > 0
        beads[filled] = sums[filled] / counts[filled, None]
    return beads
