"""The missing wedge of single-axis tilt tomography, as a Fourier mask.

Geometry: the beam is along ``z`` and the specimen tilts about ``y`` through
``[-tilt_max, +tilt_max]``. Each tilt image fills the central slice perpendicular to its beam
direction, so the measured frequencies are those with ``|k_z| <= |k_x| tan(tilt_max)`` (any
``k_y``); the rest, a double wedge around ``k_z`` of half-angle ``90 - tilt_max``, is missing.
The boundary is kept (inclusive). ``tilt_max`` 60 degrees keeps about 71 % of a 32^3 grid; 90 keeps
everything; 0 keeps only the ``k_z = 0`` plane.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["missing_wedge_mask"]


def missing_wedge_mask(box_size_px: int, tilt_max_deg: float, rfft: bool = True) -> np.ndarray:
    """Boolean mask of measured frequencies, ``(d, d, d//2 + 1)`` (rfftn layout) or ``(d, d, d)``.

    Axes are ``(z, y, x)`` in numpy FFT order (``np.fft.fftfreq``), like ``np.fft.rfftn``'s output.
    """
    if not 0.0 <= tilt_max_deg <= 90.0:
        raise ValueError(f"tilt_max_deg is {tilt_max_deg}; expected a value in [0, 90]")
    d = int(box_size_px)
    kz = np.abs(np.rint(np.fft.fftfreq(d) * d))[:, None, None]
    kx_full = np.fft.rfftfreq(d) * d if rfft else np.fft.fftfreq(d) * d
    kx = np.abs(np.rint(kx_full))[None, None, :]
    theta = math.radians(tilt_max_deg)
    # |kz| cos(theta) <= |kx| sin(theta), with a relative tolerance so that e.g. 45 degrees keeps
    # the diagonal exactly (tan(pi/4) rounds to 0.9999999999999999).
    keep = kz * math.cos(theta) <= kx * math.sin(theta) + 1e-9 * (kz + kx)
    return np.broadcast_to(keep, (d, d, kx.shape[-1])).copy()
