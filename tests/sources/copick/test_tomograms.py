"""A copick run's tomogram: the level nearest the study's voxel size, opened lazily."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import zarr
from copick_fixtures import copick_project

from cryoavae.core.copick_config import read_copick_project
from cryoavae.core.errors import InputError
from cryoavae.sources.copick import multiscale_levels, open_copick_tomogram


@pytest.fixture
def project(tmp_path):
    return copick_project(tmp_path)


def test_the_level_nearest_the_studys_voxel_size_is_opened(project):
    read = read_copick_project(project.config)
    fine = open_copick_tomogram(read, "TS_1", 10.0, "wbp", 12.0)
    coarse = open_copick_tomogram(read, "TS_1", 10.0, "wbp", 17.0)
    assert (fine.level, fine.voxel_size_angstrom, fine.array.shape) == ("0", 10.0, (32, 64, 64))
    assert (coarse.level, coarse.voxel_size_angstrom) == ("1", 20.0)
    assert coarse.array.shape == (16, 32, 32)
    assert open_copick_tomogram(read, "TS_1", 10.0, "wbp", 15.0).level == "0"  # a tie: finer
    assert not isinstance(fine.array, np.ndarray)  # read by slicing, never loaded whole
    x, y, z = 16, 48, 16  # a planted blob (level-0 voxels): its peak is where it was put
    assert fine.array[z, y, x] > fine.array[z, y, x + 3] + 0.3


def test_the_overlay_is_read_before_the_static_root(project):
    source = project.static / "ExperimentRuns" / "TS_1" / "VoxelSpacing10.000" / "wbp.zarr"
    copy = project.overlay / "ExperimentRuns" / "TS_1" / "VoxelSpacing10.000" / "wbp.zarr"
    shutil.copytree(source, copy)
    tomogram = open_copick_tomogram(read_copick_project(project.config), "TS_1", 10.0, "wbp", 10)
    assert tomogram.path == copy


@pytest.mark.parametrize(
    ("run", "spacing", "tomo_type", "words"),
    [
        ("TS_9", 10.0, "wbp", "no run 'TS_9'"),
        ("TS_1", 7.84, "wbp", r"no VoxelSpacing7.840/wbp.zarr \(it has \['VoxelSpacing10.000/wbp"),
        ("TS_1", 10.0, "denoised", "no VoxelSpacing10.000/denoised.zarr"),
    ],
)
def test_a_missing_run_or_tomogram_is_refused_in_one_line(project, run, spacing, tomo_type, words):
    with pytest.raises(InputError, match=words):
        open_copick_tomogram(read_copick_project(project.config), run, spacing, tomo_type, 10.0)


def test_levels_in_nanometres_and_a_multiscale_scale(tmp_path):
    attrs = {
        "multiscales": [
            {
                "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
                "coordinateTransformations": [{"type": "scale", "scale": [2, 2, 2]}],
                "datasets": [
                    {
                        "path": "s0",
                        "coordinateTransformations": [{"type": "scale", "scale": [0.5] * 3}],
                    },
                    {
                        "path": "s1",
                        "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 3}],
                    },
                ],
            }
        ]
    }
    assert multiscale_levels(attrs, tmp_path) == [("s0", 10.0), ("s1", 20.0)]
    assert multiscale_levels({"ome": attrs}, tmp_path)[1] == ("s1", 20.0)  # OME-NGFF 0.5


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"datasets": []}, "lists no datasets"),
        ({"axes": ["c", "z", "y", "x"], "datasets": []}, "axes are"),
        ({"datasets": [{"path": "0"}]}, "no scale"),
        (
            {
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2]}],
                    }
                ]
            },
            "not isotropic",
        ),
    ],
)
def test_bad_multiscale_metadata_is_refused(tmp_path, entry, words):
    with pytest.raises(InputError, match=words):
        multiscale_levels({"multiscales": [entry]}, tmp_path)
    with pytest.raises(InputError, match="no OME-Zarr multiscales"):
        multiscale_levels({}, tmp_path)


def test_a_zarr_without_metadata_is_named(project):
    folder = project.static / "ExperimentRuns" / "TS_2" / "VoxelSpacing10.000" / "wbp.zarr"
    shutil.rmtree(folder)
    zarr.open_group(str(folder), mode="w", zarr_format=2).create_array(
        "0", data=np.zeros((4, 4, 4))
    )
    with pytest.raises(InputError, match=f"{folder}: no OME-Zarr multiscales"):
        open_copick_tomogram(read_copick_project(project.config), "TS_2", 10.0, "wbp", 10.0)
    (folder / ".zattrs").write_text(json.dumps({"multiscales": "x"}) + "{")
    with pytest.raises(InputError, match="not a readable Zarr group"):
        open_copick_tomogram(read_copick_project(project.config), "TS_2", 10.0, "wbp", 10.0)


def test_without_zarr_installed_the_extra_is_named(project, monkeypatch):
    """zarr is an optional extra: a copick study without it is refused in one line saying what
    to install, not with an ImportError's traceback."""
    read = read_copick_project(project.config)
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if it were not installed
    with pytest.raises(InputError, match=r'pip install -e "\.\[copick\]"') as error:
        open_copick_tomogram(read, "TS_1", 10.0, "wbp", 12.0)
    assert "\n" not in str(error.value) and str(project.config) in str(error.value)
