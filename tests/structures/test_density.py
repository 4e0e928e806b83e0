"""Density maps from atoms: placement, axis order, scale, box size, MRC round trip."""

from __future__ import annotations

import math
from types import SimpleNamespace

import mrcfile
import numpy as np
import pytest

from cryoavae.core.errors import InputError
from cryoavae.structures.density import (
    DensityConfig,
    atoms_to_density,
    gaussian_sigma_angstrom,
    read_map,
    required_box_size,
    write_map,
)


def atoms(positions, atomic_numbers):
    return SimpleNamespace(
        positions=np.asarray(positions, dtype=float), atomic_numbers=np.asarray(atomic_numbers)
    )


def test_sigma_follows_the_documented_resolution_mapping():
    # The Gaussian's Fourier transform exp(-2 pi^2 sigma^2 k^2) is 1/e at k = 1/resolution.
    sigma = gaussian_sigma_angstrom(20.0)
    assert math.exp(-2 * math.pi**2 * sigma**2 / 20.0**2) == pytest.approx(math.exp(-1))


def test_single_atom_is_a_gaussian_at_the_box_centre_with_unit_integral_per_electron():
    config = DensityConfig(voxel_size_angstrom=10.0, box_size_px=16, resolution_angstrom=30.0)
    volume = atoms_to_density(atoms([[12.0, -3.0, 40.0]], [6]), config)
    assert volume.shape == (16, 16, 16) and volume.dtype == np.float32
    c = 8
    assert np.unravel_index(volume.argmax(), volume.shape) == (c, c, c)
    sigma_px = gaussian_sigma_angstrom(30.0) / 10.0
    ratio = volume[c, c, c + 1] / volume[c, c, c]
    assert ratio == pytest.approx(math.exp(-0.5 / sigma_px**2), rel=1e-5)
    assert volume.sum() == pytest.approx(6.0, rel=1e-3)
    # cut off at 4 sigma: exactly zero beyond
    z, y, x = np.indices(volume.shape) - c
    far = np.maximum(np.maximum(abs(x), abs(y)), abs(z)) > 4 * sigma_px
    assert not volume[far].any()


def test_arrays_are_indexed_z_y_x():
    config = DensityConfig(voxel_size_angstrom=10.0, box_size_px=16, resolution_angstrom=20.0)
    volume = atoms_to_density(atoms([[-30.0, 0, 0], [30.0, 0, 0]], [8, 8]), config)
    c = 8
    assert volume[c, c, c + 3] == pytest.approx(volume.max())
    assert volume[c, c, c - 3] == pytest.approx(volume.max())
    assert volume[c + 3, c, c] == 0 and volume[c, c + 3, c] == 0


def test_centre_of_mass_weighted_by_atomic_number_lands_on_the_box_centre():
    rng = np.random.default_rng(0)
    positions = rng.normal(0, 15, (200, 3)) + [500.0, -20.0, 7.0]
    numbers = rng.choice([6, 7, 8, 16], 200)
    config = DensityConfig(voxel_size_angstrom=10.0, box_size_px=24, resolution_angstrom=30.0)
    volume = atoms_to_density(atoms(positions, numbers), config).astype(np.float64)
    centroid = (np.indices(volume.shape) * volume).reshape(3, -1).sum(axis=1) / volume.sum()
    np.testing.assert_allclose(centroid, [12, 12, 12], atol=0.02)
    assert volume.sum() == pytest.approx(numbers.sum(), rel=1e-3)


def test_required_box_size_and_too_small_box_error_names_structure_and_size():
    structure = atoms([[-100.0, 0, 0], [100.0, 0, 0]], [6, 6])
    config = DensityConfig(voxel_size_angstrom=10.0, box_size_px=26, resolution_angstrom=20.0)
    # radius 10 px + half a voxel + a 2-voxel Gaussian window, then one voxel of margin per side
    assert required_box_size(structure, config) == 28
    with pytest.raises(InputError, match=r"3d2f: box_size_px is 26 .* at least 28 px"):
        atoms_to_density(structure, config, name="3d2f")
    volume = atoms_to_density(structure, DensityConfig(box_size_px=28))
    assert volume.shape == (28, 28, 28)


def test_bad_atoms_and_config_are_input_errors():
    with pytest.raises(InputError, match="empty: expected atom positions"):
        atoms_to_density(atoms(np.zeros((0, 3)), []), DensityConfig(), name="empty")
    with pytest.raises(InputError, match="box_size_px"):
        DensityConfig(box_size_px=2)
    with pytest.raises(InputError, match="resolution_angstrom"):
        DensityConfig(resolution_angstrom=0)


def test_map_round_trip_keeps_values_and_voxel_size(tmp_path):
    volume = np.random.default_rng(1).random((8, 8, 8)).astype(np.float32)
    path = tmp_path / "maps" / "x.mrc"
    write_map(path, volume, 7.5)
    assert mrcfile.validate(str(path))
    back, voxel = read_map(path)
    np.testing.assert_array_equal(back, volume)
    assert voxel == pytest.approx(7.5)


def test_read_map_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.mrc: density map not found"):
        read_map(tmp_path / "missing.mrc")
    corrupt = tmp_path / "corrupt.mrc"
    corrupt.write_bytes(b"not an mrc file" * 100)
    with pytest.raises(InputError, match="corrupt.mrc: not a valid MRC map"):
        read_map(corrupt)
    flat = tmp_path / "flat.mrc"
    with mrcfile.new(flat) as mrc:
        mrc.set_data(np.zeros((4, 4), dtype=np.float32))
        mrc.voxel_size = 1.0
    with pytest.raises(InputError, match="flat.mrc: expected a 3-D map"):
        read_map(flat)
    unset = tmp_path / "unset.mrc"
    with mrcfile.new(unset) as mrc:
        mrc.set_data(np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(InputError, match="unset.mrc: header voxel size"):
        read_map(unset)
