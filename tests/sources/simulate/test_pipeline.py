"""Simulated shards: physics against the stages, recorded poses, SNR, determinism, file formats."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import mrcfile
import numpy as np
import pytest
import starfile

from cryoavae import particles
from cryoavae.core.errors import InputError
from cryoavae.geometry.ctf import ctf_radial_table, frequency_squared_index
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.geometry.volume_rotation import (
    padded_spectra,
    rotate_spectra,
    rotate_volumes,
)
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.particles import merge_particle_tables
from cryoavae.sources.simulate import (
    SimulationConfig,
    plan_shard,
    prepare_maps,
    simulate_batch,
    simulate_shard,
)
from cryoavae.sources.simulate.noise import noise_spectrum, spectral_variance, zscore
from cryoavae.structures.density import DensityConfig, atoms_to_density

NAMES = ["alpha", "beta", "gamma"]
ROTATIONS = ["fourier", "real_space"]


def class_maps(d: int, n: int = 3) -> np.ndarray:
    """Asymmetric protein-like maps (an ellipsoid and a lobe of atoms) at 10 Å/voxel, 30 Å."""
    rng = np.random.default_rng(42)
    radius = (d / 2 - 5) * 10.0  # Å, leaves room for the blur in a d-voxel box
    maps = []
    for _ in range(n):
        directions = rng.normal(size=(400, 3))
        ball = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        ball *= rng.uniform(0, 1, (400, 1)) ** (1 / 3)
        body = ball[:300] * radius * rng.uniform(0.4, 1.0, 3)
        lobe = ball[300:] * radius * 0.3 + radius * rng.uniform(-0.6, 0.6, 3)
        atoms = SimpleNamespace(
            positions=np.concatenate([body, lobe]), atomic_numbers=rng.choice([6, 7, 8], 400)
        )
        config = DensityConfig(voxel_size_angstrom=10.0, box_size_px=d, resolution_angstrom=30.0)
        maps.append(atoms_to_density(atoms, config))
    return np.stack(maps)


def config(**changes) -> SimulationConfig:
    base = dict(particles_per_class=8, unseen_particles_per_class=4, n_shards=2, batch_size=5)
    base["shift_sd_angstrom"] = 0.0  # centred unless a test asks for picks' errors
    base["wedge_tilt_max_deg"] = 60.0  # the schema's missing_wedge default
    return SimulationConfig(**{**base, **changes})


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_config_from_yaml_sections_and_bad_values():
    c = SimulationConfig(ctf={"enabled": False}, wedge_tilt_max_deg=45.0)
    assert not c.ctf.enabled and c.ctf.voltage_kv == 300.0 and c.wedge_tilt_max_deg == 45
    with pytest.raises(InputError, match="simulation.val_fraction = 1.5 is invalid"):
        SimulationConfig(val_fraction=1.5)
    with pytest.raises(InputError, match="simulation.snr = 0 is invalid"):
        SimulationConfig(snr=0)
    with pytest.raises(InputError, match="defocus_min_um = 5.0 is larger than"):
        SimulationConfig(ctf={"defocus_min_um": 5.0, "defocus_max_um": 4.0})
    with pytest.raises(InputError, match="simulation.rotation_range_deg = 200 is invalid"):
        SimulationConfig(rotation_range_deg=200)


def test_rotation_range_limits_the_recorded_orientations():
    plan = plan_shard(
        NAMES, set(), config(particles_per_class=40, rotation_range_deg=25.0), 0, 9, 10.0
    )
    cos = (np.trace(plan.rotations, axis1=1, axis2=2) - 1) / 2
    angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert angles.max() <= 25.0 + 1e-6 and angles.mean() > 10.0


def test_shifts_are_a_pickers_error_in_angstrom_cut_at_three_sd():
    c = config(particles_per_class=2000, unseen_particles_per_class=0, shift_sd_angstrom=15.0)
    plan = plan_shard(NAMES, set(), c, 0, 4, voxel_size_angstrom=5.0)
    assert plan.shifts_px.std(axis=0) == pytest.approx([3.0] * 3, rel=0.06)  # 15 A = 3 voxels
    assert np.abs(plan.shifts_px).max() <= 9.0 + 1e-9
    assert np.abs(plan.shifts_px).max() > 7.0  # the tails are drawn, only cut


def test_shards_split_every_class_evenly_and_label_splits():
    c = config(
        particles_per_class=11,
        unseen_particles_per_class=5,
        n_shards=3,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    plans = [plan_shard(NAMES, {"gamma"}, c, shard, 7, 10.0) for shard in range(3)]
    for k, name in enumerate(NAMES):
        per_shard = [int((plan.class_index == k).sum()) for plan in plans]
        assert sum(per_shard) == (5 if name == "gamma" else 11)
        assert max(per_shard) - min(per_shard) <= 1
    for plan in plans:
        assert set(plan.split[plan.class_index == 2]) == {"unseen"}
        seen = plan.split[plan.class_index != 2]
        assert set(seen) <= {"train", "val", "test"}
    for held_out in ("val", "test"):
        n = sum(int((plan.split == held_out).sum()) for plan in plans)
        assert n == pytest.approx(0.25 * 22, abs=1.5)
    again = plan_shard(NAMES, {"gamma"}, c, 1, 7, 10.0)
    np.testing.assert_array_equal(again.rotations, plans[1].rotations)
    assert not np.allclose(plans[0].rotations[0], plans[1].rotations[0])


def test_fused_pass_equals_the_stages_composed():
    d, voxel = 16, 10.0
    maps = class_maps(d)
    c = config(snr=0.5, shift_sd_angstrom=2.5, wedge_tilt_max_deg=50.0)
    plan = plan_shard(NAMES, set(), c, 0, 3, 10.0)
    spectra = padded_spectra(maps)
    out = simulate_batch(spectra, plan, c, voxel, threads=2)
    # the stages one by one
    keep = missing_wedge_mask(d, 50.0)
    keep[0, 0, 0] = False  # z-scoring removes the mean
    rotated = rotate_spectra(
        spectra, plan.rotations, d, source_index=plan.class_index, shifts_px=plan.shifts_px
    )
    signal = (
        rotated * ctf_radial_table(d, voxel, plan.defocus_um)[:, frequency_squared_index(d)] * keep
    )
    noise = noise_spectrum(d, plan.noise_seeds, keep=keep)
    sigma = np.sqrt(spectral_variance(signal, d) / (0.5 * spectral_variance(noise, d)))
    expected = zscore(np.fft.irfftn(signal + sigma[:, None, None, None] * noise, axes=(1, 2, 3)))
    np.testing.assert_allclose(out, expected, atol=2e-4)


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_particles_are_zscored_and_have_nothing_in_the_missing_wedge(rotation):
    d = 16
    c = config(wedge_tilt_max_deg=60.0, rotation=rotation)
    plan = plan_shard(NAMES, set(), c, 0, 1, 10.0)
    out = simulate_batch(prepare_maps(class_maps(d), c), plan, c, 10.0)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)
    spectrum = np.fft.rfftn(out, axes=(1, 2, 3))
    missing = ~missing_wedge_mask(d, 60.0)
    assert np.abs(spectrum[:, missing]).max() < 1e-3 * np.abs(spectrum).max()


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("snr", [1.0, 0.1, 0.01])
def test_measured_snr_is_within_ten_percent(snr, rotation):
    d = 24
    prepared = prepare_maps(class_maps(d), config(rotation=rotation))
    plan = plan_shard(NAMES, set(), config(), 0, 11, 10.0)
    noisy = simulate_batch(prepared, plan, config(snr=snr, rotation=rotation), 10.0)
    clean = simulate_batch(prepared, plan, config(snr=None, rotation=rotation), 10.0)
    measured = []
    for y, s in zip(noisy, clean, strict=True):
        alpha = np.dot(y.ravel(), s.ravel()) / np.dot(s.ravel(), s.ravel())  # signal's share of y
        measured.append((alpha * s).var() / (y - alpha * s).var())
    # Per particle, the chance overlap of noise with signal blurs this estimate (by ~1/sqrt of
    # the signal's degrees of freedom, relative to the noise): compare the batch mean, and at
    # SNR 1 every particle too.
    assert np.mean(measured) == pytest.approx(snr, rel=0.10)
    if snr == 1.0:
        np.testing.assert_allclose(measured, snr, rtol=0.10)


def test_a_point_at_the_box_centre_stays_at_the_centre():
    d, c = 16, 8
    point = np.zeros((1, d, d, d), dtype=np.float32)
    point[0, c, c, c] = 1.0
    cfg = config(snr=None, ctf={"enabled": False}, wedge_tilt_max_deg=None)
    plan = plan_shard(["point"], set(), cfg, 0, 5, 10.0)
    out = simulate_batch(padded_spectra(point), plan, cfg, 10.0)
    for particle in out:
        assert np.unravel_index(particle.argmax(), particle.shape) == (c, c, c)


def real_space_against_fourier(plan, twin=None, **changes) -> np.ndarray:
    """Per particle, the correlation of the ``fourier`` particle of ``plan`` with the
    ``real_space`` particle of ``twin`` (default: the same plan)."""
    maps = class_maps(24)
    fourier, real = config(**changes), config(rotation="real_space", **changes)
    expected = simulate_batch(prepare_maps(maps, fourier), plan, fourier, 10.0)
    out = simulate_batch(prepare_maps(maps, real), plan if twin is None else twin, real, 10.0)
    return np.array([correlation(a, b) for a, b in zip(out, expected, strict=True)])


def test_real_space_particles_are_the_fourier_particles_of_the_same_plan():
    """One plan, two interpolations: the same pose, shift sign and (below) the same draws."""
    clean = dict(snr=None, ctf={"enabled": False}, wedge_tilt_max_deg=None)
    picked = dict(shift_sd_angstrom=15.0)  # 1.5 voxels sd: a wrong shift sign shows
    plan = plan_shard(NAMES, set(), config(**picked), 0, 3, 10.0)
    assert np.abs(plan.shifts_px).max(axis=1).min() > 1.0
    assert real_space_against_fourier(plan, **clean, **picked).min() > 0.98
    # a wrong convention fails that test: the inverse rotation, or the opposite shift
    inverse = dataclasses.replace(plan, rotations=plan.rotations.transpose(0, 2, 1))
    assert real_space_against_fourier(plan, inverse, **clean, **picked).min() < 0.9
    opposite = dataclasses.replace(plan, shifts_px=-plan.shifts_px)
    assert real_space_against_fourier(plan, opposite, **clean, **picked).min() < 0.9
    # with the CTF, the wedge and noise: the same defocus and noise draws
    assert real_space_against_fourier(plan, snr=0.5, **picked).min() > 0.98


def test_real_space_particles_do_not_depend_on_batching(tmp_path):
    maps = class_maps(16)
    c = config(rotation="real_space", shift_sd_angstrom=10.0)
    first = shard_files(tmp_path, maps, c, folder="a")
    again = shard_files(
        tmp_path,
        maps,
        config(rotation="real_space", shift_sd_angstrom=10.0, batch_size=64),
        folder="b",
        threads=1,
    )
    for path, same in zip(first, again, strict=True):
        assert path.read_bytes() == same.read_bytes()


def shard_files(tmp_path, maps, cfg, shard=0, seed=123, folder="particles", **kwargs):
    stack = tmp_path / folder / f"{shard}.mrcs"
    star = tmp_path / folder / f"{shard}.star"
    simulate_shard(maps, NAMES, {"gamma"}, cfg, shard, seed, 10.0, stack, star, **kwargs)
    return stack, star


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_rotated_back_by_recorded_angles_correlates_with_the_clean_map(tmp_path, rotation):
    d = 24
    maps = class_maps(d)
    cfg = config(snr=100.0, ctf={"enabled": False}, wedge_tilt_max_deg=None, rotation=rotation)
    stack, star = shard_files(tmp_path, maps, cfg)
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, box_ndim=3).gather(np.arange(len(table)))
    a = relion_angles_to_matrices(table[list(particles.ANGLES)].to_numpy())
    back = rotate_volumes(images, a.transpose(0, 2, 1))  # undo the recorded rotation
    for image, k in zip(back, table[particles.CLASS_NUMBER] - 1, strict=True):
        assert correlation(image, maps[k]) >= 0.95
        others = [correlation(image, maps[j]) for j in range(3) if j != k]
        assert max(others) < correlation(image, maps[k])


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_recorded_origin_points_back_to_the_particle_centre(tmp_path, rotation):
    d, c = 24, 12
    blob = np.exp(-((np.indices((d, d, d)) - c) ** 2).sum(axis=0) / 8.0).astype(np.float32)
    maps = np.stack([blob] * 3)
    cfg = config(
        snr=None,
        shift_sd_angstrom=7.0,
        ctf={"enabled": False},
        wedge_tilt_max_deg=None,
        rotation=rotation,
    )
    stack, star = shard_files(tmp_path, maps, cfg)
    table = particles.read_particle_table(star)
    images = particles.open_stack(stack, 3)
    for row, image in zip(table.itertuples(index=False), images, strict=True):
        weights = np.clip(image - image.min(), 0, None) ** 4
        centroid_zyx = (np.indices(image.shape) * weights).reshape(3, -1).sum(1) / weights.sum()
        origin_xyz = np.array([getattr(row, name) for name in particles.ORIGINS]) / 10.0
        np.testing.assert_allclose(centroid_zyx[::-1], c - origin_xyz, atol=0.1)


def test_shard_files_are_valid_and_hold_the_recorded_columns(tmp_path):
    d = 16
    cfg = config(snr=2.0)
    stack, star = shard_files(tmp_path, class_maps(d), cfg, shard=1)
    assert mrcfile.validate(str(stack))
    with mrcfile.open(stack, header_only=True) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(10.0)
    raw = starfile.read(star)
    assert len(raw) == 10  # shard 1 of 2: 4 + 4 seen, 2 unseen
    assert raw[particles.IMAGE].iloc[0] == "000001@1.mrcs"
    assert set(raw[particles.CLASS_NAME]) == set(NAMES)
    expected_number = raw[particles.CLASS_NAME].map({n: i + 1 for i, n in enumerate(NAMES)})
    assert (raw[particles.CLASS_NUMBER] == expected_number).all()
    assert (raw[particles.SHARD] == 1).all() and (raw[particles.SNR] == 2.0).all()
    assert raw[particles.DEFOCUS].between(2e4, 4e4).all()
    assert set(raw.loc[raw[particles.CLASS_NAME] == "gamma", particles.SPLIT]) == {"unseen"}
    assert raw["rlnAngleTilt"].between(0, 180).all()
    images = particles.open_stack(stack, 3)
    assert images.shape == (10, d, d, d)


def test_fixed_seed_reproduces_a_shard_byte_for_byte(tmp_path):
    maps = class_maps(16)
    first = shard_files(tmp_path, maps, config(), folder="a")
    again = shard_files(tmp_path, maps, config(batch_size=64), folder="b", threads=1)
    other = shard_files(tmp_path, maps, config(), shard=1, folder="c")
    for path, same in zip(first, again, strict=True):
        assert path.read_bytes() == same.read_bytes()
    assert (
        particles.open_stack(first[0], 3)[0].tobytes()
        != particles.open_stack(other[0], 3)[0].tobytes()
    )


def test_ctf_off_records_zero_defocus(tmp_path):
    _, star = shard_files(tmp_path, class_maps(16), config(ctf={"enabled": False}))
    assert (particles.read_particle_table(star)[particles.DEFOCUS] == 0).all()


def test_merge_rewrites_image_paths_relative_to_the_merged_table(tmp_path):
    maps = class_maps(16)
    shards = [shard_files(tmp_path, maps, config(), shard=k) for k in range(2)]
    merged = tmp_path / "elsewhere" / "all.star"
    merge_particle_tables([star for _, star in shards], merged)
    table = particles.read_particle_table(merged)
    assert len(table) == 20 and table[particles.IMAGE].iloc[0] == "000001@../particles/0.mrcs"
    images = particles.ParticleImages(table, merged, box_ndim=3)
    direct = np.concatenate([particles.open_stack(stack, 3) for stack, _ in shards])
    np.testing.assert_array_equal(images.gather(np.arange(20)), direct)
    with pytest.raises(InputError, match="appears twice"):
        merge_particle_tables([shards[0][1], shards[0][1]], merged)


def test_bad_inputs_are_input_errors(tmp_path):
    maps = class_maps(16)
    with pytest.raises(InputError, match=r"unseen classes \['delta'\]"):
        simulate_shard(maps, NAMES, {"delta"}, config(), 0, 1, 10.0, tmp_path / "a", tmp_path / "b")
    with pytest.raises(InputError, match="one per map"):
        simulate_shard(maps, NAMES[:2], set(), config(), 0, 1, 10.0, tmp_path / "a", tmp_path / "b")
    with pytest.raises(InputError, match="shard is 2"):
        simulate_shard(maps, NAMES, set(), config(), 2, 1, 10.0, tmp_path / "a", tmp_path / "b")
