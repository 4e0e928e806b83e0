"""What template matching found for each particle (:class:`Matches`), apart from the search
(:mod:`cryoavae.orientation.matcher`) so that its readers need not import the search."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Matches"]


@dataclass(frozen=True)
class Matches:
    """What matching found per particle: ``rotations`` ``(n, 3, 3)`` (the particle is its
    template turned actively by it, :mod:`cryoavae.geometry.rotations`), ``shifts_px`` ``(n, 3)``
    (x, y, z voxels: where the particle's centre sits relative to the box centre), ``scores``
    ``(n,)``, the ``templates`` ``(n,)`` matched, and ``fits`` ``(n,)``: the fraction of the
    particle's measured power (on the last refinement's band) that its template, so turned and
    moved and freely scaled, explains; the squared normalised correlation, in [0, 1]. A particle
    of a class the templates do not hold fits worse than the templates' own particles do."""

    rotations: np.ndarray
    shifts_px: np.ndarray
    scores: np.ndarray
    templates: np.ndarray
    fits: np.ndarray

    FIELDS = ("rotations", "shifts_px", "scores", "templates", "fits")

    def take(self, rows: np.ndarray) -> Matches:
        """These matches of particles ``rows`` only."""
        return Matches(*(getattr(self, field)[rows] for field in self.FIELDS))
