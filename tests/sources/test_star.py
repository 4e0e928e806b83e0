"""A user's own STAR table of subtomograms, read in place: classes, splits, angles, voxel size,
and every way such a table is broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
from rule_scripts import assert_refused, run_rule
from star_fixtures import BOX, relion_star, write_volume

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.sources.star import (
    SOURCE_ROW,
    StarSourceConfig,
    describe_star_particles,
    import_star_particles,
)

CLASSES = ["ribo", "proteasome", "other"]


def do_import(star, tmp_path, config=None, unseen=("other",), classes=CLASSES):
    out = tmp_path / "results" / "particles" / "particles.star"
    config = config or StarSourceConfig()
    return import_star_particles(star, classes, list(unseen), config, 0, out), out


def test_particles_are_read_in_place_with_their_classes_angles_and_voxel_size(tmp_path):
    star = relion_star(tmp_path / "data")
    table, out = do_import(star, tmp_path)
    assert list(table[P.CLASS_NAME][:4]) == ["ribo", "proteasome", "other", "ribo"]
    assert set(table.loc[table[P.CLASS_NAME] == "other", P.SPLIT]) == {"unseen"}
    assert table[SOURCE_ROW].tolist() == list(range(12))
    assert table["rlnAngleRot"].tolist() == [10.0 * i for i in range(12)]
    assert (table[P.VOXEL_SIZE] == 12.5).all() and (table[P.DEFOCUS] == 25000.0).all()
    # nothing copied: the rows point at the user's own files, relative to our table
    assert table[P.IMAGE][0] == "../../data/Subtomograms/p000.mrc"
    assert table[P.IMAGE][11] == "000006@../../data/Subtomograms/rest.mrcs"
    assert list((tmp_path / "results").rglob("*.mrc*")) == []
    read_back = P.read_particle_table(out)
    images = P.ParticleImages(read_back, out)
    assert images.shape == (12, BOX, BOX, BOX)
    np.testing.assert_array_equal(images.gather(np.arange(12))[:, 0, 0, 0], np.arange(12))
    assert P.table_voxel_size(read_back, out) == 12.5


def test_voxel_size_from_optics_then_header_then_config(tmp_path):
    no_optics = relion_star(tmp_path / "a", optics_voxel=None, header_voxel=7.0)
    assert do_import(no_optics, tmp_path / "a")[0][P.VOXEL_SIZE].iloc[0] == 7.0
    unknown = relion_star(tmp_path / "b", optics_voxel=None, header_voxel=0.0)
    config = StarSourceConfig(voxel_size_angstrom=4.5)
    assert do_import(unknown, tmp_path / "b", config)[0][P.VOXEL_SIZE].iloc[0] == 4.5
    with pytest.raises(InputError, match="set star.voxel_size_angstrom"):
        do_import(unknown, tmp_path / "b")


def test_a_named_class_column_and_a_given_split(tmp_path, caplog):
    star = relion_star(tmp_path / "data")
    blocks = starfile.read(star, always_dict=True)
    names = np.array(["Ribo", "PROTEASOME", "junk"] * 4)
    blocks["particles"]["tmLabel"] = names
    blocks["particles"]["mySplit"] = ["train", "val", "train"] * 4
    starfile.write(blocks, star, overwrite=True)
    config = StarSourceConfig(class_column="tmLabel", split_column="mySplit")
    caplog.set_level("INFO", logger="cryoavae.sources.star")
    table, _ = do_import(star, tmp_path, config, unseen=())
    read_as = "(tmLabel → name: particles): Ribo → ribo: 4, PROTEASOME → proteasome: 4, junk → not"
    assert read_as in caplog.text
    assert table[P.CLASS_NAME][:3].tolist() == ["ribo", "proteasome", "junk"]
    assert table[P.CLASS_NUMBER][:3].tolist() == [1, 2, 0]  # junk: outside the class list
    assert table[P.SPLIT][:3].tolist() == ["train", "val", "unseen"]


def test_the_log_maps_each_class_number_to_its_name_in_number_order(tmp_path, caplog):
    """Number k is the k-th name of star.classes, whatever the names' alphabetical order; the
    log says so with each class's count, in plain names (not numpy's reprs)."""
    star = relion_star(tmp_path / "data")  # class numbers 1, 2, 3, four particles each
    caplog.set_level("INFO", logger="cryoavae.sources.star")
    do_import(star, tmp_path, classes=["ribo", "proteasome"], unseen=("proteasome",))
    expected = (
        "classes (rlnClassNumber → name: particles): 1 → ribo: 4, 2 → proteasome (unseen): 4, "
        "3 → not in star.classes (class 0, unseen): 4"
    )
    assert expected in caplog.text
    assert "np.str_" not in caplog.text


def test_class_numbers_without_names_are_refused(tmp_path):
    star = relion_star(tmp_path / "data")
    with pytest.raises(InputError, match="give every number a name"):
        do_import(star, tmp_path, classes=[], unseen=())


def test_a_star_file_is_described_without_a_study(tmp_path):
    """What `cryoavae init` writes a config around: classes with their counts, box, voxel size
    and where it was read; numbers ascending, names in order of first appearance (any case)."""
    star = relion_star(tmp_path / "data")
    seen = describe_star_particles(star)
    assert seen.numbered and seen.classes == ["1", "2", "3"] and seen.counts == [4, 4, 4]
    assert seen.box_shape == (BOX, BOX, BOX) and seen.n_files == 7 and seen.n_particles == 12
    assert seen.voxel_size_angstrom == 12.5 and "optics" in seen.voxel_size_from
    edit_particles(star, lambda t: t.__setitem__("tmLabel", ["proteasome", "Ribo", "ribo"] * 4))
    named = describe_star_particles(star, "tmLabel")
    assert not named.numbered
    assert named.classes == ["proteasome", "Ribo"] and named.counts == [4, 8]
    no_optics = describe_star_particles(
        relion_star(tmp_path / "b", optics_voxel=None, header_voxel=7.0)
    )
    assert no_optics.voxel_size_angstrom == 7.0 and "p000.mrc" in no_optics.voxel_size_from
    unknown = describe_star_particles(relion_star(tmp_path / "c", optics_voxel=None))
    assert unknown.voxel_size_angstrom is None and unknown.voxel_size_from == ""
    with pytest.raises(InputError, match=r"particles.star: class column 'rlnClass' \(star"):
        describe_star_particles(star, "rlnClass")


# --------------------------------------------------------------------------- broken tables


def import_rule(tmp_path, star: Path, **star_settings):
    out = tmp_path / "results" / "particles" / "particles.star"
    settings = {
        "class_column": "rlnClassNumber",
        "split_column": None,
        "val_fraction": 0.2,
        "voxel_size_angstrom": None,
        **star_settings,
    }
    result, log = run_rule(
        tmp_path,
        "import_star_particles",
        input={"star": str(star)},
        output={"x": out},
        params={"class_names": CLASSES, "unseen": ["other"], "star": settings, "seed": 0},
    )
    return result, log, out


def edit_particles(star: Path, change) -> None:
    blocks = starfile.read(star, always_dict=True)
    change(blocks["particles"])
    starfile.write(blocks, star, overwrite=True)


def test_a_star_that_names_a_missing_stack(tmp_path):
    star = relion_star(tmp_path / "data")
    (tmp_path / "data" / "Subtomograms" / "rest.mrcs").unlink()
    result, log, out = import_rule(tmp_path, star)
    assert_refused(result, log, "rest.mrcs", "not found", outputs=[out])


def test_a_missing_single_particle_file(tmp_path):
    star = relion_star(tmp_path / "data")
    (tmp_path / "data" / "Subtomograms" / "p003.mrc").unlink()
    result, log, out = import_rule(tmp_path, star)
    assert_refused(result, log, "p003.mrc", "not found", outputs=[out])


def test_an_index_past_the_stacks_end(tmp_path):
    star = relion_star(tmp_path / "data")
    edit_particles(
        star,
        lambda t: t.__setitem__(
            P.IMAGE,
            t[P.IMAGE].replace("000006@Subtomograms/rest.mrcs", "000009@Subtomograms/rest.mrcs"),
        ),
    )
    result, log, out = import_rule(tmp_path, star)
    assert_refused(result, log, "rest.mrcs", "asks for image 9", "holds 6", outputs=[out])


def test_mixed_box_sizes(tmp_path):
    star = relion_star(tmp_path / "data")
    write_volume(tmp_path / "data" / "Subtomograms" / "p002.mrc", np.zeros((10, 10, 10)))
    result, log, out = import_rule(tmp_path, star)
    assert_refused(result, log, "p002.mrc", "(10, 10, 10)", outputs=[out])


def test_a_class_column_that_does_not_exist(tmp_path):
    star = relion_star(tmp_path / "data")
    result, log, out = import_rule(tmp_path, star, class_column="rlnClass")
    assert_refused(result, log, "particles.star", "'rlnClass'", "star.class_column", outputs=[out])


def test_a_split_column_with_other_values(tmp_path):
    star = relion_star(tmp_path / "data")
    edit_particles(star, lambda t: t.__setitem__("half", ["1", "2"] * 6))
    result, log, out = import_rule(tmp_path, star, split_column="half")
    assert_refused(result, log, "particles.star", "row 1", "half = '1'", outputs=[out])


def test_nan_voxels_stop_training_with_one_line(tmp_path):
    star = relion_star(tmp_path / "data")
    volume = np.ones((BOX, BOX, BOX))
    volume[3, 4, 5] = np.nan
    write_volume(tmp_path / "data" / "Subtomograms" / "p001.mrc", volume)
    table, ours = do_import(star, tmp_path)  # the import reads headers, not every voxel
    prior = tmp_path / "prior.csv"
    prior.write_text("ribo,proteasome,other\n1,0.2,0\n0.2,1,0.3\n0,0.3,1\n")
    out = {k: tmp_path / "model" / f"{k}" for k in ("model", "history", "summary")}
    model = {"channels": [4], "latent_dims": 2, "pose_dims": 0}
    result, log = run_rule(
        tmp_path,
        "train_model",
        input={"particles": str(ours), "affinity": str(prior)},
        output=out,
        params={
            "class_names": CLASSES,
            "model": model,
            "training": {"epochs": 1, "batch_size": 4},
            "seed": 0,
            "work_dir": str(tmp_path / "model" / "checkpoints"),
        },
        wildcards={"variant": "avae"},
    )
    assert_refused(result, log, "p001.mrc", "image 1", "NaN", outputs=out.values())
