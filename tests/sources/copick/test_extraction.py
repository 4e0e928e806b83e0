"""A copick run cut by the rule's script: the Zarr level nearest the study's voxel size, boxes at
the picks, exactly as extraction cuts an MRC tomogram; bad inputs refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import zarr
from copick_fixtures import VOXEL, copick_project, write_picks
from rule_scripts import assert_refused, run_rule

from cryoavae import particles as P
from cryoavae.sources.copick import BOX_CENTRE_COLUMNS, LOCATION_COLUMNS
from cryoavae.sources.extract import ExtractionConfig

CLASSES = ["ribosome", "proteasome", "ferritin"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copick_project(tmp_path_factory.mktemp("copick"))


def extract(tmp_path, project, run="TS_1", voxel=20.0, extraction=None, **copick):
    settings = {"config": str(project.config), "voxel_spacing": 10.0, "tomo_type": "wbp",
                "objects": [], "user_id": "curator", "session_id": None, "unseen": ["ferritin"],
                "val_fraction": 0.2, "test_fraction": 0.2, **copick}  # fmt: skip
    output = {"stack": tmp_path / "shard_000.mrcs", "star": tmp_path / "shard_000.star"}
    params = {
        "class_names": CLASSES,
        "unseen": ["ferritin"],
        "run": run,
        "copick": settings,
        "extraction": dataclasses.asdict(
            ExtractionConfig(box_size_px=8, normalize=False, **(extraction or {}))
        ),
        "voxel_size_angstrom": voxel,
        "seed": 0,
    }
    result, log = run_rule(
        tmp_path,
        "extract_copick",
        input={"config": str(project.config)},
        output=output,
        params=params,
        wildcards={"shard": "000", "seed": "0"},
    )
    return result, log, output


def test_boxes_are_cut_at_the_picks_from_the_nearest_level(tmp_path, project):
    result, log, output = extract(tmp_path, project)
    assert result.returncode == 0, log + result.stderr
    assert "wbp.zarr: level 1, (16, 32, 32) voxels (z, y, x) of 20.000 Å" in log
    table = P.read_particle_table(output["star"])
    truth = project.truth["TS_1"]
    assert sorted(table[P.CLASS_NAME]) == sorted(n for n in CLASSES for _ in truth[n][0])
    assert set(table["rlnTomoName"]) == {"TS_1"}  # the other user's two ribosomes are not read
    for name in CLASSES:
        rows = table[table[P.CLASS_NAME] == name]
        np.testing.assert_allclose(rows[list(LOCATION_COLUMNS)], truth[name][0])
        centres = np.rint(truth[name][0] / 20.0) * 20.0  # the level's voxel nearest each pick
        np.testing.assert_allclose(rows[list(BOX_CENTRE_COLUMNS)], centres)
    assert set(table.loc[table[P.CLASS_NAME] == "ferritin", P.SPLIT]) == {"unseen"}
    boxes = P.ParticleImages(table, output["star"], box_ndim=3).gather(np.arange(len(table)))
    assert P.stack_voxel_size(output["stack"]) == pytest.approx(20.0)
    peak = np.stack(np.unravel_index(boxes.reshape(len(boxes), -1).argmax(1), boxes.shape[1:]), 1)
    assert np.abs(peak - 4).max() <= 1  # every blob at its box's centre (index b // 2)
    ribosomes = table[P.CLASS_NAME] == "ribosome"
    assert table.loc[ribosomes, list(P.ANGLES)].notna().all().all()  # the picks' orientations
    assert table.loc[~ribosomes, list(P.ANGLES)].isna().all().all()


def test_false_positives_have_a_run_but_no_pick_behind_them(tmp_path, project):
    result, log, output = extract(tmp_path, project, extraction={"false_positive_fraction": 0.25})
    assert result.returncode == 0, log + result.stderr
    table = P.read_particle_table(output["star"])
    junk = table[P.CLASS_NAME] == "background"
    assert junk.sum() == 1 and set(table["rlnTomoName"]) == {"TS_1"}
    assert table.loc[junk, list(LOCATION_COLUMNS)].isna().all().all()
    assert table.loc[~junk, list(LOCATION_COLUMNS)].notna().all().all()
    assert table[list(BOX_CENTRE_COLUMNS)].notna().all().all()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"run": "TS_7"}, "no run 'TS_7'"),
        ({"voxel_spacing": 13.48}, "has no VoxelSpacing13.480/wbp.zarr"),
        ({"user_id": "nobody"}, "has no picks of"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(tmp_path, project, change, words):
    run = change.pop("run", "TS_1")
    result, log, output = extract(tmp_path, project, run=run, **change)
    assert_refused(result, log, words, outputs=output.values())


def test_a_pick_outside_the_tomogram_is_refused_naming_its_file(tmp_path):
    """One point beyond the tomogram's far face in the curator's ferritin picks: the rule stops
    before any box is cut, in one line naming that file."""
    project = copick_project(tmp_path / "copick", runs=("TS_1",))
    picks = project.static / "ExperimentRuns" / "TS_1" / "Picks"
    locations = [[160.0, 160.0, 160.0], [160.0, 160.0, 32 * VOXEL + 50.0]]
    write_picks(picks, "curator", "0", "ferritin", "TS_1", locations, [np.eye(4)] * 2)
    result, log, output = extract(tmp_path, project)
    words = (str(picks / "curator_0_ferritin.json"), "point 1", "outside the tomogram")
    assert_refused(result, log, *words, outputs=output.values())


def test_a_zarr_without_voxel_size_is_refused_naming_it(tmp_path):
    """A multiscale whose levels carry no scale: the voxel size is unknown, and a guess would
    cut boxes of the wrong size, so the rule stops in one line naming the array."""
    project = copick_project(tmp_path / "copick", runs=("TS_1",))
    folder = project.static / "ExperimentRuns" / "TS_1" / "VoxelSpacing10.000" / "wbp.zarr"
    group = zarr.open_group(str(folder), mode="r+")
    multiscales = group.attrs["multiscales"]
    for dataset in multiscales[0]["datasets"]:
        del dataset["coordinateTransformations"]
    group.attrs["multiscales"] = multiscales
    result, log, output = extract(tmp_path, project)
    assert_refused(result, log, str(folder), "datasets[0] has no scale", outputs=output.values())
