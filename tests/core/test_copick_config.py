"""A copick project's config file read, and a copick study validated against it."""

from __future__ import annotations

import copy
import json
import os

import pytest
from copick_fixtures import copick_project

from cryoavae.core import copick_config as C
from cryoavae.core.config import (
    class_names,
    classes_from_structures,
    unseen_classes,
    validate_config,
)
from cryoavae.core.errors import InputError


@pytest.fixture
def project(tmp_path):
    return copick_project(tmp_path, shape=(8, 8, 8), grid=(4,), z=4)


def study(project, **copick):
    return {
        "study": "cp",
        "particle_source": "copick",
        "copick": {"config": str(project.config), **copick},
        "structures": {"offline": True},
    }


def rewrite(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 10**9))  # a new version of the file


def test_the_project_reads_objects_roots_and_runs(project):
    read = C.read_copick_project(project.config)
    assert [o.name for o in read.objects] == ["ribosome", "proteasome", "ferritin", "membrane"]
    assert read.objects[0].structure_id == "1bxn" and read.objects[3].structure_id is None
    assert read.roots == (project.overlay, project.static)  # the overlay first
    assert read.runs() == ["TS_1", "TS_2"]
    (project.overlay / "ExperimentRuns" / "TS_3").mkdir(parents=True)
    (project.overlay / "ExperimentRuns" / ".hidden").mkdir()
    assert read.runs() == ["TS_1", "TS_2", "TS_3"]
    assert read.run_folders("TS_1") == [project.static / "ExperimentRuns" / "TS_1"]


def test_a_relative_root_is_taken_from_the_config_files_folder(project):
    rewrite(project.config, overlay_root="local://overlay", static_root="portal")
    read = C.read_copick_project(project.config)
    assert read.roots == (project.overlay, project.static)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "a JSON object is expected"),
        ('{"config_type": "cryoet_data_portal", "pickable_objects": []}', "only local"),
        ('{"pickable_objects": [{"name": "a_b", "is_particle": true}]}', "hold no '_'"),
        ('{"pickable_objects": [{"name": "ab"}], "overlay_root": "/x"}', "no is_particle"),
        ('{"pickable_objects": [{"name": "ab", "is_particle": true}]}', "overlay_root is missing"),
        (
            '{"pickable_objects": [{"name": "ab", "is_particle": true}], "overlay_root": "s3://b/x"}',
            "only local folders",
        ),
    ],
)
def test_a_bad_config_file_is_refused_in_one_line(tmp_path, text, words):
    path = tmp_path / "copick_config.json"
    path.write_text(text)
    with pytest.raises(InputError, match=words) as error:
        C.read_copick_project(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_study_takes_its_classes_and_structures_from_the_objects(project):
    config = validate_config(study(project, unseen=["ferritin"]))
    assert class_names(config) == ["ribosome", "proteasome", "ferritin"]  # particles, in order
    assert unseen_classes(config) == ["ferritin"]
    assert classes_from_structures(config)
    assert C.structure_ids(config) == {"ribosome": "1bxn", "proteasome": "1s3x", "ferritin": "3h84"}
    assert C.study_runs(config) == ["TS_1", "TS_2"]
    chosen = validate_config(study(project, objects=["proteasome", "ribosome"], runs=["TS_2"]))
    assert class_names(chosen) == ["proteasome", "ribosome"]
    assert C.study_runs(chosen) == ["TS_2"]


def test_an_object_without_a_pdb_id_needs_a_file_or_another_prior(project):
    objects = copy.deepcopy(json.loads(project.config.read_text())["pickable_objects"])
    del objects[1]["pdb_id"]
    rewrite(project.config, pickable_objects=objects)
    with pytest.raises(
        InputError, match="object 'proteasome' has no pdb_id; give structures.files"
    ):
        validate_config(study(project))
    config = validate_config({**study(project), "affinity": {"source": "uniform"}})
    assert not classes_from_structures(config)  # no maps for anyone: the prior is uniform
    with_file = study(project)
    with_file["structures"]["files"] = {"proteasome": "mine.cif"}
    assert classes_from_structures(validate_config(with_file))


@pytest.mark.parametrize(
    ("copick", "extra", "words"),
    [
        ({"objects": ["ribosome", "lysozyme"]}, {}, "copick.objects names 'lysozyme'"),
        ({"objects": ["ribosome", "membrane"]}, {}, "'membrane' has is_particle false"),
        ({"runs": ["TS_1", "TS_9"]}, {}, "copick.runs names 'TS_9', but"),
        ({"unseen": ["lysozyme"]}, {}, "copick.unseen names 'lysozyme'"),
        ({}, {"structures": {"ids": ["1bxn"]}}, "structures.ids does not apply"),
        ({}, {"variants": {"my_vae": {}}}, "variant 'my_vae' cannot be a copick session_id"),
        ({"user_id": "cryoavae"}, {}, "would read the picks this study writes"),
        ({"config": None}, {}, "needs copick.config"),
    ],
)
def test_a_copick_study_is_refused_in_one_line(project, copick, extra, words):
    config = {**study(project, **copick), **extra}
    with pytest.raises(InputError, match=words) as error:
        validate_config(config)
    assert "\n" not in str(error.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(InputError, match="copick config not found"):
        C.read_copick_project(tmp_path / "nowhere.json")
