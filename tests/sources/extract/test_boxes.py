"""Boxes cut from arrays that are not in memory (a Zarr array) equal those cut from memory."""

from __future__ import annotations

import numpy as np
import pytest

from cryoavae.sources.extract import boxes as B


class SlicedArray:
    """An array read only by slicing, as a Zarr array is; records every read."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.reads = data, data.shape, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


@pytest.fixture
def volume():
    return np.random.default_rng(0).standard_normal((37, 21, 26)).astype(np.float32)


def test_slab_reads_cut_the_same_boxes_edges_included(volume, monkeypatch):
    monkeypatch.setattr(B, "_SLAB_VOXELS", 21 * 26 * 12)  # 12 planes a slab: several slabs
    rng = np.random.default_rng(1)
    centres = np.stack([rng.integers(0, n, 40) for n in volume.shape], axis=1)
    lazy = SlicedArray(volume)
    got = B.cut_boxes(lazy, centres, 7, fill_value=-3.0)
    np.testing.assert_array_equal(got, B.cut_boxes(volume, centres, 7, fill_value=-3.0))
    assert 1 < len(lazy.reads) < len(centres)  # slabs, not one read per box
    for key in lazy.reads:  # whole planes, each slab at most 12 deep
        assert isinstance(key, slice) and 0 <= key.start < key.stop <= volume.shape[0]
        assert key.stop - key.start <= 12


def test_resampled_boxes_from_slabs_equal_those_from_memory(volume):
    centres = np.array([[18.3, 10.6, 12.2], [5.5, 9.0, 13.9]])
    lazy = SlicedArray(volume)
    got = B.resample_boxes(lazy, centres, 6, 1.5, fill_value=0.0)
    np.testing.assert_allclose(got, B.resample_boxes(volume, centres, 6, 1.5, fill_value=0.0))


def test_the_mean_is_read_once_slab_wise(volume, monkeypatch):
    tomogram = B.Tomogram(SlicedArray(volume), 10.0, "t")
    assert tomogram.mean() == pytest.approx(float(volume.mean(dtype=np.float64)), rel=1e-6)
    reads = len(tomogram.data.reads)
    tomogram.mean()
    assert len(tomogram.data.reads) == reads
    assert B.Tomogram(volume, 10.0, "t", known_mean=2.5).mean() == 2.5


def test_box_centres_are_the_nearest_voxel_unless_resampled():
    coords = np.array([[3.4, 5.6, 7.5]])
    np.testing.assert_array_equal(B.box_centres_xyz(coords, 1.0), [[3.0, 6.0, 8.0]])
    np.testing.assert_array_equal(B.box_centres_xyz(coords, 2.0), coords)
