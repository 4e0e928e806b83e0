"""Extraction from a synthetic tomogram with planted blobs at known coordinates."""

from __future__ import annotations

import logging

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.particles.positions import CENTRED, TOMO_NAME, TOMOGRAM_VOXEL_SIZE
from cryoavae.sources.extract import ExtractionConfig, extract_subtomograms

SHAPE_ZYX = (40, 56, 72)  # distinct sizes so a swapped axis shows up
VOXEL_ANGSTROM = 5.0
# x, y, z (voxels): asymmetric, so x <-> z mix-ups move the blobs
PLANTED_XYZ = np.array(
    [[20.0, 14.0, 12.0], [50.0, 30.0, 25.0], [36.0, 41.0, 17.0], [60.0, 44.0, 28.0]]
)
CLASSES = ["1bxn", "3qm1", "1s3x", "5mrc"]


def _tomogram(path, blobs_xyz, sigma=1.5, voxel=VOXEL_ANGSTROM):
    z, y, x = np.meshgrid(*[np.arange(n) for n in SHAPE_ZYX], indexing="ij")
    vol = np.zeros(SHAPE_ZYX, dtype=np.float64)
    for bx, by, bz in blobs_xyz:  # a handful of blobs, each one whole-array expression
        vol += np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * sigma**2))
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(vol.astype(np.float32))
        mrc.voxel_size = voxel
    return vol


def _shrec_list(path, names, coords, angles=None):
    lines = []
    for i, (name, (x, y, z)) in enumerate(zip(names, coords, strict=True)):
        a = angles[i] if angles is not None else (10.0 * i, 20.0, 30.0)
        lines.append(f"{name} {x:g} {y:g} {z:g} {a[0]:.4f} {a[1]:.4f} {a[2]:.4f}")
    path.write_text("\n".join(lines) + "\n")


def _centroids(boxes):
    """Centre of mass (z, y, x) of each box's positive part above its median."""
    w = np.clip(boxes - np.median(boxes, axis=(1, 2, 3), keepdims=True), 0, None)
    grids = np.meshgrid(*[np.arange(n) for n in boxes.shape[1:]], indexing="ij")
    total = w.sum(axis=(1, 2, 3))
    return np.stack([(w * g).sum(axis=(1, 2, 3)) / total for g in grids], axis=1)


def _run(tmp_path, cfg, coords=PLANTED_XYZ, names=CLASSES, unseen=(), seed=0, class_names=CLASSES):
    tomo = tmp_path / "tomo.mrc"
    if not tomo.exists():
        _tomogram(tomo, PLANTED_XYZ)
    plist = tmp_path / "particle_locations.txt"
    _shrec_list(plist, names, coords)
    stack, star = tmp_path / "out" / "p.mrcs", tmp_path / "out" / "p.star"
    extract_subtomograms(tomo, plist, class_names, list(unseen), cfg, seed, stack, star, shard=3)
    table = P.read_particle_table(star)
    images = P.ParticleImages(table, star, box_ndim=3).gather(np.arange(len(table)))
    return table, images, stack, star


def test_planted_particles_recovered_within_one_voxel(tmp_path):
    b = 16
    table, boxes, stack, _ = _run(tmp_path, ExtractionConfig(box_size_px=b))
    assert len(table) == len(PLANTED_XYZ)
    found_zyx = _centroids(boxes) - b // 2 + PLANTED_XYZ[:, ::-1]
    assert np.abs(found_zyx - PLANTED_XYZ[:, ::-1]).max() <= 1.0
    # normalised, voxel size in the header, a valid stack
    assert np.allclose(boxes.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    assert np.allclose(boxes.std(axis=(1, 2, 3)), 1, atol=1e-3)
    assert P.stack_voxel_size(stack) == pytest.approx(VOXEL_ANGSTROM)
    assert mrcfile.validate(str(stack))
    assert list(table[P.CLASS_NAME]) == CLASSES
    assert list(table[P.CLASS_NUMBER]) == [1, 2, 3, 4]
    assert set(table[P.SHARD]) == {3}
    assert table[P.SNR].isna().all()


def test_each_particle_records_its_tomogram_and_its_relion5_position(tmp_path):
    table, _, _, _ = _run(tmp_path, ExtractionConfig(box_size_px=16))
    assert set(table[TOMO_NAME]) == {"tomo"}  # the file's stem: a SHREC list names no tomogram
    half_size = np.array(SHAPE_ZYX[::-1]) / 2
    expected = (PLANTED_XYZ - half_size) * VOXEL_ANGSTROM  # Å from the centre, x from the MRC's x
    np.testing.assert_allclose(table[list(CENTRED)].to_numpy(), expected)
    assert (table[TOMOGRAM_VOXEL_SIZE] == VOXEL_ANGSTROM).all()


def test_rescaled_particles_stay_centred(tmp_path):
    b = 8
    cfg = ExtractionConfig(box_size_px=b, rescale_to_angstrom=2 * VOXEL_ANGSTROM, normalize=False)
    # sub-voxel positions: rescaling samples around the exact coordinate, not the rounded one
    coords = PLANTED_XYZ + np.array([0.4, -0.3, 0.35])
    _tomogram(tmp_path / "tomo.mrc", coords)
    table, boxes, stack, _ = _run(tmp_path, cfg, coords=coords)
    assert P.stack_voxel_size(stack) == pytest.approx(2 * VOXEL_ANGSTROM)
    assert len(table) == len(PLANTED_XYZ)
    assert np.abs(_centroids(boxes) - b // 2).max() <= 0.1
    # the blob (sigma 1.5 tomogram voxels) shrinks to sigma ~0.75 output voxels: peak at centre
    flat = boxes.reshape(len(boxes), -1).argmax(axis=1)
    assert np.all(np.stack(np.unravel_index(flat, boxes.shape[1:]), axis=1) == b // 2)


def test_edge_skip_warns_and_drops(tmp_path, caplog):
    coords = np.vstack([PLANTED_XYZ, [[2.0, 30.0, 20.0]]])  # x = 2: box crosses x = 0
    with caplog.at_level(logging.WARNING, logger="cryoavae.sources.extract"):
        table, _, _, _ = _run(
            tmp_path, ExtractionConfig(box_size_px=16), coords, [*CLASSES, "1bxn"]
        )
    assert len(table) == len(PLANTED_XYZ)
    assert "skipped 1 of 5" in caplog.text


def test_edge_pad_fills_with_tomogram_mean(tmp_path):
    tomo_mean = _tomogram(tmp_path / "tomo.mrc", PLANTED_XYZ).mean()
    coords = np.vstack([PLANTED_XYZ, [[2.0, 30.0, 20.0]]])
    cfg = ExtractionConfig(box_size_px=16, edge="pad", normalize=False)
    table, boxes, _, _ = _run(tmp_path, cfg, coords, [*CLASSES, "1bxn"])
    assert len(table) == 5
    # box x index j reads tomogram x = 2 - 8 + j: j < 6 lies outside
    assert np.allclose(boxes[-1][:, :, :6], tomo_mean, rtol=1e-5)
    assert not np.allclose(boxes[-1][:, :, 6:], tomo_mean)


def test_splits_unknown_classes_and_seed(tmp_path):
    rng = np.random.default_rng(1)
    n = 60
    coords = rng.uniform([10, 10, 10], [60, 45, 30], size=(n, 3)).round()
    names = rng.choice(["1BXN", "3qm1", "1s3x", "vesicle"], size=n)  # case differs from the list
    cfg = ExtractionConfig(box_size_px=8, val_fraction=0.25)
    table, _, _, star = _run(tmp_path, cfg, coords, list(names), unseen=["1s3x"], seed=7)
    by_name = dict(zip(names, range(n), strict=False))
    assert by_name  # sanity
    vesicle = table[P.CLASS_NAME] == "vesicle"
    assert (table.loc[vesicle, P.CLASS_NUMBER] == 0).all()
    assert (table.loc[vesicle, P.SPLIT] == "unseen").all()
    assert (table.loc[table[P.CLASS_NAME] == "1s3x", P.SPLIT] == "unseen").all()
    assert set(table[P.CLASS_NAME]) == {"1bxn", "3qm1", "1s3x", "vesicle"}  # list's spelling
    for name in ("1bxn", "3qm1"):
        split = table.loc[table[P.CLASS_NAME] == name, P.SPLIT]
        assert (split == "val").sum() == round(0.25 * len(split))
    # same seed, same table (the STAR header carries a time stamp, so compare contents)
    again, *_ = _run(tmp_path, cfg, coords, list(names), unseen=["1s3x"], seed=7)
    pd.testing.assert_frame_equal(again, table)
    other, *_ = _run(tmp_path, cfg, coords, list(names), unseen=["1s3x"], seed=8)
    assert not other[P.SPLIT].equals(table[P.SPLIT])


def test_config_and_class_errors(tmp_path):
    with pytest.raises(InputError, match="edge"):
        ExtractionConfig(edge="wrap")
    with pytest.raises(InputError, match="box_size_px"):
        ExtractionConfig(box_size_px=2)
    with pytest.raises(InputError, match="unseen: 'xyz'"):
        _run(tmp_path, ExtractionConfig(box_size_px=8), unseen=["xyz"])
    far = np.array([[500.0, 500.0, 500.0]])
    with pytest.raises(InputError, match="none of its 1 particles"):
        _run(tmp_path, ExtractionConfig(box_size_px=8), far, ["1bxn"])


def test_tomogram_with_a_broken_header(tmp_path, caplog):
    tomo = tmp_path / "tomo.mrc"
    _tomogram(tomo, PLANTED_XYZ)
    raw = bytearray(tomo.read_bytes())
    raw[208:212] = b"XXXX"  # the map ID: mrcfile refuses it unless permissive
    tomo.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="cryoavae.sources.extract"):
        table, *_ = _run(tmp_path, ExtractionConfig(box_size_px=8))
    assert len(table) == len(PLANTED_XYZ)
    assert "non-standard MRC header" in caplog.text
    (tmp_path / "junk.mrc").write_bytes(b"not an mrc file at all")
    with pytest.raises(InputError, match="junk.mrc: not a valid MRC file"):
        extract_subtomograms(
            tmp_path / "junk.mrc",
            tmp_path / "particle_locations.txt",
            CLASSES,
            [],
            ExtractionConfig(),
            0,
            tmp_path / "j.mrcs",
            tmp_path / "j.star",
        )
