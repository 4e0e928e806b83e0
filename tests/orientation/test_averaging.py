"""Subtomogram averages from orientations (cryoavae.orientation.averaging): copies turned back
by their true poses reproduce the map, and missing-wedge weighting restores what the wedge took."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from cryoavae import particles as P
from cryoavae.evaluate.averages import fsc
from cryoavae.geometry.ctf import CtfModel, ctf_1d, ctf_radial_table, frequency_squared_index
from cryoavae.geometry.volume_rotation import rotate_volumes
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.orientation.averaging import centre_on_mass, class_average

D = 24


def blob_map() -> np.ndarray:
    """An asymmetric, smooth map: three Gaussian blobs at different offsets."""
    z, y, x = np.indices((D, D, D)) - D // 2
    out = np.zeros((D, D, D))
    for (cx, cy, cz), s, w in [
        ((4, 0, 0), 2.0, 1.0),
        ((-2, 3, 1), 1.6, 0.7),
        ((0, -2, -4), 2.2, 0.5),
    ]:
        out += w * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s**2))
    return out.astype(np.float32)


def stack_of(volumes: np.ndarray, tmp_path) -> P.ParticleImages:
    P.write_stack(tmp_path / "p.mrcs", volumes, 10.0)
    n = len(volumes)
    table = P.particle_table("p.mrcs", np.ones(n, int), ["a"] * n, np.array(["train"] * n))
    P.write_particle_table(tmp_path / "p.star", table)
    return P.ParticleImages(table, tmp_path / "p.star")


def test_copies_turned_back_with_their_true_poses_reproduce_the_map(tmp_path):
    reference = blob_map()
    poses = Rotation.random(40, rng=np.random.default_rng(0)).as_matrix()
    images = stack_of(rotate_volumes(reference, poses, source_index=np.zeros(40, int)), tmp_path)
    average = class_average(images, np.arange(40), poses)
    frequency, curve = fsc(average, reference)
    # to half Nyquist; beyond it the smooth map has next to no power (1e-6 of it), and what is
    # left there is the trilinear interpolation's error, turned back and forth
    assert curve[frequency <= 0.25].min() >= 0.99, curve.round(3)
    wrong = Rotation.random(40, rng=np.random.default_rng(1)).as_matrix()
    assert fsc(class_average(images, np.arange(40), wrong), reference)[1][3:].max() < 0.9


def test_missing_wedge_weighting_restores_what_the_wedge_took(tmp_path):
    reference = blob_map()
    poses = Rotation.random(60, rng=np.random.default_rng(2)).as_matrix()
    turned = rotate_volumes(reference, poses, source_index=np.zeros(60, int))
    keep = missing_wedge_mask(D, 45.0, rfft=False)
    wedged = np.fft.ifftn(np.fft.fftn(turned, axes=(1, 2, 3)) * keep, axes=(1, 2, 3)).real
    images = stack_of(wedged.astype(np.float32), tmp_path)
    plain = fsc(class_average(images, np.arange(60), poses), reference)[1]
    weighted = fsc(class_average(images, np.arange(60), poses, tilt_max_deg=45.0), reference)[1]
    assert weighted.mean() > plain.mean() and weighted[: D // 4].min() > 0.95


def test_copies_off_centre_are_moved_back_before_they_are_averaged(tmp_path):
    """Copies turned and then moved by up to two voxels: given where each sits, the average is
    the map again; turned back without moving back, it is a blur of the map."""
    reference = blob_map()
    rng = np.random.default_rng(3)
    poses = Rotation.random(40, random_state=rng).as_matrix()
    offsets = rng.uniform(-2.0, 2.0, (40, 3))
    copies = rotate_volumes(reference, poses, source_index=np.zeros(40, int), shifts_px=offsets)
    images = stack_of(copies, tmp_path)
    moved_back = class_average(images, np.arange(40), poses, shifts_px=offsets)
    left_there = class_average(images, np.arange(40), poses)
    correlation = [
        np.corrcoef(v.ravel(), reference.ravel())[0, 1] for v in (moved_back, left_there)
    ]
    assert correlation[0] > 0.99 and 1 - correlation[1] > 5 * (1 - correlation[0])


def test_a_reference_drawn_off_centre_is_moved_to_its_centre_of_mass():
    """The same map drawn at two offsets (a decoder may draw anywhere) comes back to one place:
    its centre of mass on voxel D // 2, the shape unchanged."""
    reference = blob_map()
    drawn = rotate_volumes(reference, np.stack([np.eye(3)] * 2), shifts_px=[[3, -1, 0], [0, 0, 0]])
    centred = centre_on_mass(drawn)
    assert np.corrcoef(centred[0].ravel(), centred[1].ravel())[0, 1] > 0.999
    mass = np.clip(centred - np.median(centred, axis=(1, 2, 3), keepdims=True), 0, None)
    z, y, x = np.indices((D, D, D))
    for volume in mass:
        centre = [(volume * axis).sum() / volume.sum() for axis in (x, y, z)]
        np.testing.assert_allclose(centre, D // 2, atol=0.05)


def test_ctf_correction_gives_the_density_itself_from_particles_each_with_its_own_ctf(tmp_path):
    # each copy filtered by the CTF of its defocus, as the simulator measures a particle; the
    # plain average is the map filtered by the mean CTF (low frequencies damped tenfold, a band
    # inverted), the corrected one the map again
    reference = blob_map()
    n = 40
    poses = Rotation.random(n, rng=np.random.default_rng(4)).as_matrix()
    turned = rotate_volumes(reference, poses, source_index=np.zeros(n, int))
    defocus = np.linspace(2.0, 4.0, n)
    microscope = CtfModel(voxel_size_angstrom=5.0)
    table = ctf_radial_table(D, 5.0, defocus)[:, frequency_squared_index(D)]
    spectra = np.fft.rfftn(turned, axes=(1, 2, 3)) * table
    measured = np.fft.irfftn(spectra, s=(D,) * 3, axes=(1, 2, 3))
    images = stack_of(measured.astype(np.float32), tmp_path)

    def cc(volume):
        return np.corrcoef(volume.ravel(), reference.ravel())[0, 1]

    plain = cc(class_average(images, np.arange(n), poses))
    corrected = cc(class_average(images, np.arange(n), poses, None, None, microscope, defocus))
    assert corrected > 0.99 and plain < 0.95, (corrected, plain)  # measured: 0.998, 0.890


def test_the_weighted_average_is_the_full_grid_division_of_summed_spectra(tmp_path):
    """The average taken on the half grid equals the definition written out on the full grid:
    the real part of the inverse of (sum of each turned particle's spectrum times its CTF) over
    (sum of its turned wedge times its CTF squared), for noise particles whose corner
    frequencies a turned wedge does not weigh symmetrically."""
    rng = np.random.default_rng(7)
    n, tilt = 30, 50.0
    volumes = rng.normal(size=(n, D, D, D)).astype(np.float32)
    images = stack_of(volumes, tmp_path)
    poses = Rotation.random(n, rng=rng).as_matrix()
    shifts = rng.uniform(-1.5, 1.5, (n, 3))
    defocus = rng.uniform(2.0, 4.0, n)
    microscope = CtfModel(voxel_size_angstrom=5.0)
    back = np.transpose(poses, (0, 2, 1))
    turned = rotate_volumes(volumes, back, shifts_px=-np.einsum("nij,nj->ni", back, shifts))
    wedge = np.fft.fftshift(missing_wedge_mask(D, tilt, rfft=False)).astype(np.float32)
    measured = np.fft.ifftshift(
        rotate_volumes(wedge, back, source_index=np.zeros(n, int)), axes=(1, 2, 3)
    )
    k = np.fft.fftfreq(D)
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    ctf = ctf_1d(
        radius / 5.0,
        defocus[:, None, None, None],
        microscope.voltage_kv,
        microscope.cs_mm,
        microscope.amplitude_contrast,
    )
    spectra = np.fft.fftn(turned, axes=(1, 2, 3))
    for filters, floor, given in ((1.0, 1.0, {}), (ctf, 1e-3 * n, {"ctf": microscope})):
        top = (spectra * filters).sum(0)
        bottom = np.maximum((measured * filters**2).sum(0), floor)
        expected = np.fft.ifftn(top / bottom).real
        focus = defocus if given else None
        got = class_average(images, np.arange(n), poses, tilt, shifts, defocus_um=focus, **given)
        np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
