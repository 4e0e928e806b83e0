"""The rotations a search tries: a near-uniform grid over SO(3), lattices around a rotation, and
the peak of a quadratic fitted to a lattice's scores.

Rotations near the identity are written as rotation vectors (axis times angle, radians); a
lattice ``L`` around a particle's current best ``B`` is the set ``B @ exp(l)``, so each ``l`` turns
the template about its own axes.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

__all__ = ["QuadraticPeak", "local_grid", "rotation_matrices", "uniform_grid"]


def uniform_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(N, 3, 3)`` covering SO(3) with about ``step_deg`` between neighbours."""
    import torch_so3

    angles = torch_so3.get_uniform_euler_angles(psi_step=step_deg, theta_step=step_deg)
    return Rotation.from_euler("ZYZ", angles.numpy(), degrees=True).as_matrix()


def local_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(15, 3, 3)`` near the identity (which is first): rotation vectors at the
    centre, the six faces and the eight corners of a cube of side ``step_deg`` (a body-centred
    cubic cell), reaching ``step_deg / 2`` about each axis and further between them.

    Fifteen points determine a quadratic (:class:`QuadraticPeak`), which then places the peak
    between them: on SHREC'21 maps this finds rotations as well as the 33-point lattice of twice
    the reach, for half its cost. (torch-so3's local grid samples tilts about axes near y only,
    reaching under 2 degrees about x, so a refinement on it cannot correct an error about x.)
    """
    steps = np.arange(-1, 2)
    lattice = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    squared = np.einsum("ij,ij->i", lattice, lattice)
    lattice = lattice[(squared <= 1) | (squared == 3)]
    lattice = lattice[np.argsort(squared[(squared <= 1) | (squared == 3)], kind="stable")]
    return Rotation.from_rotvec(lattice * (step_deg / 2), degrees=True).as_matrix()


def rotation_matrices(rotvecs: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` of rotation vectors ``(..., 3)`` (Rodrigues)."""
    angle = rotvecs.norm(dim=-1, keepdim=True)
    axis = rotvecs / angle.clamp(min=1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1)
    cross = cross.reshape(*rotvecs.shape[:-1], 3, 3)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvecs.dtype, device=rotvecs.device)
    return eye + sin * cross + (1 - cos) * (cross @ cross)


class QuadraticPeak:
    """Where between a lattice's points the score peaks: a quadratic in the rotation vector
    (10 coefficients) fitted by least squares to the scores at the lattice's points, and its
    maximum, when it has one within the lattice's reach. A search whose lattice spacing is ``s``
    finds a rotation to about ``s / 2``; the fitted peak finds it to a fraction of ``s`` for the
    cost of one more score."""

    def __init__(self, lattice: np.ndarray):
        rotvecs = Rotation.from_matrix(np.asarray(lattice)).as_rotvec()  # (m, 3) radians
        x, y, z = rotvecs.T
        design = np.stack(
            [np.ones_like(x), x, y, z, x * x / 2, y * y / 2, z * z / 2, x * y, x * z, y * z], 1
        )
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError("QuadraticPeak: the lattice cannot determine a quadratic")
        self.fit = torch.from_numpy(np.linalg.pinv(design))  # (10, m)
        self.reach = float(np.linalg.norm(rotvecs, axis=1).max())

    def offsets(self, scores: torch.Tensor) -> torch.Tensor:
        """Rotation vectors ``(k, 3)`` (radians) of the fitted peak of each row of ``scores``
        ``(k, m)``; zero where the quadratic has no maximum within the lattice's reach."""
        c = scores.double() @ self.fit.to(scores.device).T  # (k, 10)
        gradient = c[:, 1:4]
        hessian = torch.stack(
            [
                torch.stack([c[:, 4], c[:, 7], c[:, 8]], -1),
                torch.stack([c[:, 7], c[:, 5], c[:, 9]], -1),
                torch.stack([c[:, 8], c[:, 9], c[:, 6]], -1),
            ],
            dim=1,
        )
        concave = torch.linalg.eigvalsh(hessian)[:, -1] < 0
        safe = torch.where(concave[:, None, None], hessian, -torch.eye(3, dtype=c.dtype))
        peak = -torch.linalg.solve(safe, gradient[:, :, None])[..., 0]
        usable = concave & (peak.norm(dim=1) <= self.reach)
        return torch.where(usable[:, None], peak, torch.zeros_like(peak))
