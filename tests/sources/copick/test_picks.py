"""copick picks files read (filtered by object, user and session) and written."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from copick_fixtures import VOXEL, copick_project, write_picks

from cryoavae.core.copick_config import read_copick_project
from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.sources.copick import read_copick_picks, write_picks_file

OBJECTS = ["ribosome", "proteasome", "ferritin"]


@pytest.fixture
def project(tmp_path):
    return copick_project(tmp_path)


def picks_folder(project, run="TS_1"):
    return project.static / "ExperimentRuns" / run / "Picks"


def test_the_curators_picks_are_read_with_their_orientations(project):
    picks = read_copick_picks(read_copick_project(project.config), "TS_1", OBJECTS, "curator", "0")
    for name in OBJECTS:
        locations, transforms = project.truth["TS_1"][name]
        np.testing.assert_array_equal(picks.locations[picks.names == name], locations)
    plist = picks.particle_list(20.0)  # voxels of a tomogram at 20 Å
    np.testing.assert_allclose(plist.coords_xyz, picks.locations / 20.0)
    ribosome = picks.names == "ribosome"
    _, transforms = project.truth["TS_1"]["ribosome"]
    np.testing.assert_allclose(
        relion_angles_to_matrices(plist.angles_deg[ribosome]), transforms[:, :3, :3], atol=1e-9
    )
    assert np.isnan(plist.angles_deg[~ribosome]).all()  # identity matrices: no orientation


def test_a_points_translation_moves_the_particle(project):
    transforms = np.tile(np.eye(4), (1, 1, 1))
    transforms[0, :3, 3] = [5.0, -10.0, 2.5]
    folder = picks_folder(project)
    write_picks(folder, "shifter", "0", "ferritin", "TS_1", [[100.0, 200.0, 300.0]], transforms)
    picks = read_copick_picks(read_copick_project(project.config), "TS_1", ["ferritin"], "shifter")
    np.testing.assert_allclose(picks.particle_list(10.0).coords_xyz, [[10.5, 19.0, 30.25]])


def test_users_sessions_and_objects_filter_the_files(project, caplog):
    read = read_copick_project(project.config)
    n_curated = len(project.truth["TS_1"]["ribosome"][0])
    assert len(read_copick_picks(read, "TS_1", ["ribosome"], "other").names) == 2
    assert len(read_copick_picks(read, "TS_1", ["ribosome"], None, "0").names) == n_curated
    with caplog.at_level(logging.WARNING):
        both = read_copick_picks(read, "TS_1", ["ribosome"])
    assert len(both.names) == n_curated + 2
    assert "2 users/sessions ['curator_0', 'other_1'] are read together" in caplog.text
    assert set(read_copick_picks(read, "TS_1", ["ferritin"], "curator").names) == {"ferritin"}
    with pytest.raises(InputError, match=r"no picks of \['ferritin'\] by user other"):
        read_copick_picks(read, "TS_1", ["ferritin"], "other")


def test_the_studys_own_picks_are_read_only_when_asked_for(project):
    write_picks(project.overlay / "ExperimentRuns" / "TS_1" / "Picks", "cryoavae", "avae",
                "ferritin", "TS_1", [[1.0, 2.0, 3.0]], [np.eye(4)])  # fmt: skip
    read = read_copick_picks(read_copick_project(project.config), "TS_1", ["ferritin"])
    assert len(read.names) == len(project.truth["TS_1"]["ferritin"][0])
    mine = read_copick_picks(read_copick_project(project.config), "TS_1", ["ferritin"], "cryoavae")
    np.testing.assert_array_equal(mine.locations, [[1.0, 2.0, 3.0]])


def test_a_file_in_the_overlay_replaces_the_static_ones(project):
    overlay = project.overlay / "ExperimentRuns" / "TS_1" / "Picks"
    overlay.mkdir(parents=True)
    shutil.copy(picks_folder(project) / "other_1_ribosome.json", overlay)
    body = json.loads((overlay / "other_1_ribosome.json").read_text())
    body["points"] = body["points"][:1]
    (overlay / "other_1_ribosome.json").write_text(json.dumps(body))
    picks = read_copick_picks(read_copick_project(project.config), "TS_1", ["ribosome"], "other")
    assert len(picks.names) == 1


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{broken", "not a copick picks file"),
        ('{"points": 3}', "expected an object with points"),
        (
            '{"points": [{"location": {"x": 1, "y": 2}}]}',
            r"point 0 has location \{'x': 1, 'y': 2\}",
        ),
        (
            '{"points": [{"location": {"x": 1, "y": 2, "z": NaN}}]}',
            "point 0 has a non-finite location",
        ),
        (
            '{"points": [{"location": {"x": 1, "y": 2, "z": 3}}, {"location": {"x": 1, "y": 2, '
            '"z": 3}, "transformation_": [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}',
            "point 1's transformation_ is not a rotation",
        ),
        (
            '{"points": [{"location": {"x": 1, "y": 2, "z": 3}, "transformation_": [[1]]}]}',
            "not a 4 x 4",
        ),
    ],
)
def test_a_malformed_picks_file_is_refused_in_one_line(project, content, words):
    path = picks_folder(project) / "bad_0_ferritin.json"
    path.write_text(content)
    with pytest.raises(InputError, match=words) as error:
        read_copick_picks(read_copick_project(project.config), "TS_1", ["ferritin"], "bad")
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_files_named_otherwise_are_skipped_with_a_warning(project, caplog):
    (picks_folder(project) / "notes.json").write_text("{}")
    (picks_folder(project) / ".hidden_0_ribosome.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        read_copick_picks(read_copick_project(project.config), "TS_1", OBJECTS, "curator")
    assert "notes.json: not named <user>_<session>_<object>.json" in caplog.text
    assert ".hidden" not in caplog.text


def test_a_written_file_reads_back_and_refuses_names_copick_cannot_take(tmp_path):
    path = tmp_path / "Picks" / "cryoavae_avae_ribosome.json"
    meta = {"pickable_object_name": "ribosome", "user_id": "cryoavae", "session_id": "avae",
            "run_name": "TS_1", "voxel_spacing": VOXEL}  # fmt: skip
    transforms = np.tile(np.eye(4), (2, 1, 1))
    transforms[1, :3, 3] = [1.0, 2.0, 3.0]
    write_picks_file(path, meta, np.ones((2, 3)), transforms, np.array([0.9, 0.1]), True)
    body = json.loads(path.read_text())
    assert {k: body[k] for k in meta} == meta and body["unit"] == "angstrom"
    assert body["points"][1]["transformation_"][0] == [1.0, 0.0, 0.0, 1.0]
    assert [p["score"] for p in body["points"]] == [0.9, 0.1]
    with pytest.raises(InputError, match="session_id 'my_vae' is not a copick name"):
        write_picks_file(
            path, {**meta, "session_id": "my_vae"}, np.ones((0, 3)), np.ones((0, 4, 4)), [], True
        )


def test_a_point_outside_the_tomogram_is_refused_naming_its_file_and_point(project):
    """A pick beyond the tomogram is a mistake in the picks (or the wrong voxel spacing or run),
    refused in one line naming the file and the point, before any box is cut."""
    extent = np.array([64.0, 64.0, 32.0]) * VOXEL  # the fixture's level-0 tomogram, x, y, z in Å
    read = read_copick_project(project.config)
    read_copick_picks(read, "TS_1", OBJECTS, "curator", "0").refuse_outside(extent)  # all inside
    path = picks_folder(project) / "bad_0_ferritin.json"
    inside, outside = [10.0, 20.0, 30.0], [10.0, 20.0, 32 * VOXEL + 5.0]
    write_picks(
        picks_folder(project), "bad", "0", "ferritin", "TS_1", [inside, outside], [np.eye(4)] * 2
    )
    picks = read_copick_picks(read, "TS_1", ["ferritin"], "bad", "0")
    with pytest.raises(
        InputError, match=r"point 1 at \(10\.0, 20\.0, .*\) Å lies outside"
    ) as error:
        picks.refuse_outside(extent)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
