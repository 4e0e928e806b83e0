"""A local rotation refinement that samples four turned templates per particle, not fifteen.

The score of a particle ``x`` against its template turned by ``R exp(w)`` (``w`` a small
rotation vector) is the least-squares fit with a free scale (:mod:`.matcher`). Near ``R`` the
turned template is about ``T0 + sum_j w_j D_j``, ``D_j`` its derivative along a turn about axis
``j``: sampled at ``R`` and at ``R`` turned by ``PROBE_DEG`` about each of the template's own
axes, four samples give ``T0`` and ``D`` by forward differences. Fitting ``x`` by
``s (T0 + D w)`` at the current scale ``s`` is then linear in ``w`` (a Gauss-Newton step):
``s M w = g`` with ``M = D^T P D`` and ``g = D^T x - s D^T P T0``, ``P`` the weight of a
template's power (the particle's filter squared). The step reads only 14 sums over the
coefficients (``T0 . x``, ``|T0|^2``, ``D^T x``, ``D^T P T0``, ``M``), which the sampler adds up
as it samples (:meth:`~.fourier.RotatedTemplates.probe_sums`). One more sample scores
``R exp(w)``, kept only where it scores higher.

Why: the quadratic fitted to a 15-point lattice (:class:`~.grids.QuadraticPeak`) needs the
scores at all fifteen; the step above uses the coefficients themselves, which carry the
direction the score rises in. On the synthetic particles of ``benchmarks/bench_match.py`` and the
default study's eight SHREC'21 maps at SNR 1 it finds rotations as closely as the lattice (median
error within 0.1 degree, the same fraction within 20 degrees), for 5 samples per level instead of
16. At SNR 0.1 the lattice, which scores turns up to half its step away, recovers more of the
small proteins' orientations: one step from a noisy gradient stays nearer a wrong start
(docs/performance.md).
"""

from __future__ import annotations

import math

import torch

from cryoavae.geometry.spectrum_samples import PROBE_PAIRS
from cryoavae.orientation.grids import QuadraticPeak, local_grid, rotation_matrices

__all__ = ["PROBE_DEG", "REFINEMENTS", "NewtonStep", "level_steps"]

PROBE_DEG = 0.5  # the turn the derivatives are taken over: well below any level's step
REFINEMENTS = ("lattice", "newton", "lattice_newton")


class NewtonStep:
    """One Gauss-Newton step of a refinement level whose turns may reach ``reach_deg``."""

    def __init__(self, reach_deg: float):
        self.reach = math.radians(reach_deg)
        self.probe = math.radians(PROBE_DEG)

    def probes(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The rotations ``(4, 3, 3)`` sampled: the identity, then a turn about x, y, z."""
        turns = torch.cat([torch.zeros(1, 3), self.probe * torch.eye(3)]).to(torch.float64)
        return rotation_matrices(turns).to(dtype=dtype, device=device)

    def scores(self, sums: torch.Tensor) -> torch.Tensor:
        """The least-squares scores ``(k, 4)`` at the rotation and its probes, from their sums
        (:meth:`~.fourier.RotatedTemplates.probe_sums` ``(k, 14)``): a probe's sample is the
        rotation's plus its difference ``d``, so its cross term and power follow from theirs."""
        cross = torch.cat([sums[:, :1], sums[:, :1] + sums[:, 2:5]], 1)
        power = torch.cat([sums[:, 1:2], sums[:, 1:2] + 2 * sums[:, 5:8] + sums[:, 8:11]], 1)
        return cross.clamp(min=0).square() / power.clamp(min=1e-30)

    def offsets(self, sums: torch.Tensor) -> torch.Tensor:
        """Rotation vectors ``(k, 3)`` (radians) of the step, at most :attr:`reach` long; zero
        where the template does not fit the particle (no positive scale). ``sums`` ``(k, 14)``:
        :meth:`~.fourier.RotatedTemplates.probe_sums` at :meth:`probes`, their differences ``d``
        the derivatives ``D`` times the probe's angle."""
        sums = sums.double()
        cross, power = sums[:, 0], sums[:, 1]
        scale = cross / power.clamp(min=1e-30)  # (k,)
        along, own = sums[:, 2:5] / self.probe, sums[:, 5:8] / self.probe  # D^T x, D^T P T0
        gradient = along - scale[:, None] * own
        a, b = PROBE_PAIRS
        normal = sums.new_zeros((len(sums), 3, 3))
        normal[:, a, b] = sums[:, 8:14] / self.probe**2  # D^T P D, symmetric
        normal[:, b, a] = sums[:, 8:14] / self.probe**2
        normal = normal * scale.clamp(min=1e-30)[:, None, None]
        # a ridge of a millionth of the mean curvature keeps a flat direction from blowing up
        ridge = 1e-6 * normal.diagonal(dim1=1, dim2=2).mean(-1).clamp(min=1e-30)
        eye = torch.eye(3, dtype=normal.dtype, device=normal.device)
        normal = normal + ridge[:, None, None] * eye
        step = torch.linalg.solve(normal, gradient[:, :, None])[..., 0]
        length = step.norm(dim=1, keepdim=True)
        step = step * (self.reach / length.clamp(min=1e-30)).clamp(max=1.0)
        fits = (scale > 0) & torch.isfinite(step).all(dim=1)
        return torch.where(fits[:, None], step, torch.zeros_like(step))


def level_steps(refinement: str, steps_deg: list[float], device: torch.device):
    """Each refinement level's way of turning a rotation, and the turns it samples around it
    ``(m, 3, 3)`` float64: a :class:`~.grids.QuadraticPeak` over :func:`~.grids.local_grid`'s 15
    points (``"lattice"``), a :class:`NewtonStep` over its 4 probes (``"newton"``), or the lattice
    at the first level and the step after it (``"lattice_newton"``): the first level starts from
    the global grid's nearest point, up to half a grid step away, where one step from a noisy
    gradient can stay near a wrong start; the finer levels start near the peak."""
    if refinement not in REFINEMENTS:
        raise ValueError(f"refinement {refinement!r} is not one of {'|'.join(REFINEMENTS)}")
    steps, local = [], []
    for level, step_deg in enumerate(steps_deg):
        if refinement == "newton" or (refinement == "lattice_newton" and level > 0):
            newton = NewtonStep(step_deg)
            steps.append(newton)
            local.append(newton.probes(torch.float64, device))
        else:
            lattice = local_grid(step_deg)
            steps.append(QuadraticPeak(lattice))
            local.append(torch.from_numpy(lattice).to(device))
    return steps, local
