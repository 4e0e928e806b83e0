"""Subtomogram averages: particles turned back by their orientations and averaged.

Each particle ``x_i`` is a reference turned actively by ``A_i``
(:mod:`cryoavae.geometry.rotations`), so ``rotate(x_i, A_i^T)`` is the reference again, plus noise.
With the missing wedge (a tilt series about y through ``±tilt_max_deg``) each particle lacks a
wedge of Fourier space, turned with it: the average is then formed in Fourier space, every
frequency divided by the number of particles that measured it (missing-wedge weighting), not by the
number of particles. With the CTF (each particle's density filtered by the CTF of its defocus),
each particle's spectrum is multiplied by its CTF and every frequency divided by the sum of the
squared CTFs that measured it (at least :data:`CTF_FLOOR` times the particle count): the average
of the density itself, which is what a matcher that filters its references by each particle's
CTF needs. Used by the evaluation's class averages and by template matching's reference
refinement.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from cryoavae.geometry.ctf import CtfModel, ctf_1d
from cryoavae.geometry.translation import moved
from cryoavae.geometry.volume_rotation import rotate_volumes
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.particles import ParticleImages

__all__ = ["centre_on_mass", "centred_on_mass", "class_average", "mass_offsets"]

BATCH = 128
#: with the CTF, a frequency is divided by the sum of its squared CTFs, or by this fraction of the
#: particle count where that sum is smaller: never by nearly nothing (a floor of one particle, as
#: without the CTF, held the lowest shells at 0.2-0.5 of their amplitude for 40-100 particles;
#: this one, 1/1000, changed the val orientations of docs/science.md 4.12 by +0.01 and +0.006)
CTF_FLOOR = 1e-3


def class_average(
    images: ParticleImages,
    rows: np.ndarray,
    rotations: np.ndarray,
    tilt_max_deg: float | None = None,
    shifts_px: np.ndarray | None = None,
    ctf: CtfModel | None = None,
    defocus_um: np.ndarray | None = None,
) -> np.ndarray:
    """The average ``(d, d, d)`` of particles ``rows`` turned back by ``rotations`` ``(n, 3, 3)``
    (RELION's ``A`` of each) and moved back from ``shifts_px`` ``(n, 3)`` (x, y, z voxels: where
    each particle's centre sits; None: centred), missing-wedge weighted when ``tilt_max_deg`` is
    given, CTF-corrected when ``ctf`` and the rows' ``defocus_um`` ``(n,)`` are."""
    d = images.shape[-1]
    corrected = ctf is not None and defocus_um is not None
    # The spectra on the half (rfft) grid of a real volume, the weights on the full unshifted
    # grid. Without the CTF every particle's spectrum enters the sum unweighted, and a sum of
    # spectra is the spectrum of the sum: one transform of the summed volumes does.
    spectrum = np.zeros((d, d, d // 2 + 1), dtype=np.complex128)
    summed = np.zeros((d, d, d))
    weight = np.zeros((d, d, d))
    wedge = None
    if tilt_max_deg is not None:  # measured frequencies, centred on voxel d // 2 like a volume
        wedge = np.fft.fftshift(missing_wedge_mask(d, tilt_max_deg, rfft=False)).astype(np.float32)
    for start in range(0, len(rows), BATCH):
        back = np.transpose(rotations[start : start + BATCH], (0, 2, 1))  # A^T
        # a particle at t is the reference turned by A, then moved by t: turning it back by A^T
        # and then moving it by -A^T t brings the reference to the centre
        moved = None
        if shifts_px is not None:
            moved = -np.einsum("nij,nj->ni", back, shifts_px[start : start + BATCH])
        volumes = rotate_volumes(images.gather(rows[start : start + BATCH]), back, shifts_px=moved)
        measured = np.ones((len(back), 1, 1, 1), np.float32)
        if wedge is not None:
            turned = rotate_volumes(wedge, back, source_index=np.zeros(len(back), int))
            measured = np.fft.ifftshift(turned, axes=(1, 2, 3))
        if corrected:  # isotropic: unchanged by the turn
            filters = _ctf_volumes(ctf, d, defocus_um[start : start + BATCH])
            spectra = scipy.fft.rfftn(volumes, axes=(1, 2, 3))
            spectrum += (spectra * filters[..., : d // 2 + 1]).sum(0)
            measured = measured * filters**2
        else:
            summed += volumes.sum(0, dtype=np.float64)
        weight += measured.sum(0)  # (1, 1, 1) without wedge or CTF: the particle count
    if not corrected:
        spectrum = scipy.fft.rfftn(summed)
    inverse = 1.0 / np.maximum(weight, CTF_FLOOR * len(rows) if corrected else 1.0)
    # a turned wedge is not quite symmetric under k -> -k at the grid's corners; the average is
    # real, so each frequency takes the mean of its own and its mirror's division
    mirrored = np.roll(np.flip(inverse), 1, axis=(0, 1, 2))  # the value at -k
    spectrum *= ((inverse + mirrored) / 2)[..., : d // 2 + 1]
    return scipy.fft.irfftn(spectrum, s=(d, d, d)).astype(np.float32)


def _ctf_volumes(ctf: CtfModel, d: int, defocus_um: np.ndarray) -> np.ndarray:
    """Each particle's CTF ``(n, d, d, d)`` on the full, unshifted Fourier grid."""
    k = np.fft.fftfreq(d)  # cycles per voxel
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    frequency = radius / ctf.voxel_size_angstrom
    focus = np.asarray(defocus_um, dtype=np.float64)[:, None, None, None]
    values = ctf_1d(frequency, focus, ctf.voltage_kv, ctf.cs_mm, ctf.amplitude_contrast)
    return values.astype(np.float32)


def centre_on_mass(volumes: np.ndarray) -> np.ndarray:
    """Each volume ``(m, d, d, d)`` moved (a Fourier phase shift, so sub-voxel and exact) so that
    the centre of mass of its density above its median sits on voxel ``d // 2``.

    A reference's centre is otherwise arbitrary: a decoder that renders shifted particles may draw
    its canonical particle anywhere in the box, and an average follows the shifts it was built
    from. Shifts found against centred references mean the same thing for every class: where the
    particle's centre of mass sits, as the simulated maps and most pickers place it.
    """
    return centred_on_mass(volumes)[0]


def centred_on_mass(volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`centre_on_mass`'s volumes (float32) and the offsets ``(m, 3)`` it moved away
    (:func:`mass_offsets`), for a caller that keeps track of where each centre went."""
    volumes = np.asarray(volumes, dtype=np.float64)
    offsets = mass_offsets(volumes)
    return moved(volumes, -offsets), offsets


def mass_offsets(volumes: np.ndarray) -> np.ndarray:
    """Where the centre of mass of each volume's ``(m, d, d, d)`` density above its median sits
    ``(m, 3)`` (x, y, z voxels from voxel ``d // 2``): what :func:`centre_on_mass` moves away."""
    volumes = np.asarray(volumes, dtype=np.float64)
    d = volumes.shape[-1]
    mass = np.clip(volumes - np.median(volumes, axis=(1, 2, 3), keepdims=True), 0, None)
    total = np.maximum(mass.sum(axis=(1, 2, 3)), 1e-12)
    grid = np.arange(d) - d // 2
    axes = [np.einsum(f"nzyx,{axis}->n", mass, grid) for axis in "xyz"]
    return np.stack(axes, axis=1) / total[:, None]
