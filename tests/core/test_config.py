"""Config validation: defaults from the schema, one-line errors naming the YAML path."""

import copy

import pytest

from cryoavae.core.config import (
    class_names,
    model_settings,
    particle_wedge,
    recentre_source,
    unseen_classes,
    validate_config,
    variant_sections,
)
from cryoavae.core.configfiles import configfile_arguments, refuse_bad_configfiles
from cryoavae.core.errors import InputError
from cryoavae.core.yaml_io import load_yaml

BASE = {"study": "t", "structures": {"ids": ["1BXN", "1s3x", "3h84"], "unseen": ["3h84"]}}


def validated(schema_path, **overrides):
    config = copy.deepcopy(BASE)
    config.update(overrides)
    return validate_config(config)


def test_defaults_filled_from_schema(schema_path):
    config = validated(schema_path)
    assert config["simulation"]["snr"] == 1.0
    assert config["training"]["beta"]["schedule"] == "flat"
    assert config["variants"] == {"avae": {}}
    assert class_names(config) == ["1bxn", "1s3x", "3h84"]
    assert unseen_classes(config) == ["3h84"]


def test_default_study_config_is_valid(repo, schema_path):
    config = validate_config(load_yaml(repo / "config" / "config.yaml"))
    assert len(class_names(config)) == 10
    assert sorted(unseen_classes(config)) == ["3d2f", "3h84"]


def test_every_shipped_study_config_is_valid(repo, schema_path):
    """The configs that reproduce the studies of README and docs/science.md still validate."""
    paths = sorted((repo / "config").glob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        config = validate_config(load_yaml(path))
        assert config["study"] == path.stem or path.stem == "config", path.name


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"simulation": {"snr": -1}}, "simulation.snr = -1 is invalid; expected > 0"),
        ({"simulation": {"snr": "high"}}, "simulation.snr = 'high' is invalid; expected type"),
        ({"simulation": {"snrr": 1}}, "unknown key simulation.snrr"),
        ({"bogus": 1}, "unknown key bogus"),
        ({"model": {"decoder": "splat"}}, "model.decoder = 'splat' is invalid; expected one of"),
        ({"training": {"gamma": {"value": 1, "shape": "x"}}}, "unknown key training.gamma.shape"),
        ({"study": "../escape"}, "study = '../escape' is invalid"),
        ({"structures": {"ids": ["1bxn", "abcd"]}}, "structures.ids[1] = 'abcd' is invalid"),
        ({"structures": {"ids": ["1bxn", "1s3x"], "unseen": ["9zzz"]}}, "structures.unseen names"),
        ({"structures": {"ids": ["1bxn", "1s3x"], "unseen": ["1s3x"]}}, "leaves 1 seen classes"),
        (
            {"structures": {"ids": ["1bxn", "1s3x"]}, "evaluation": {"symmetry": {"2cg9": "C2"}}},
            "evaluation.symmetry names '2cg9', which is not a class with a map",
        ),
        ({"evaluation": {"symmetry": {"1bxn": "C2.5"}}}, "evaluation.symmetry.1bxn = 'C2.5'"),
        (
            {"simulation": {"ctf": {"defocus_min_um": 5, "defocus_max_um": 1}}},
            "defocus_min_um = 5 is larger than defocus_max_um = 1",
        ),
        (
            {"variants": {"bad": {"training": {"epochs": 0}}}},
            "variants.bad.training.epochs = 0 is invalid; expected >= 1",
        ),
        (
            {"orientation": {"method": "template_matching"}},
            "orientation.method 'template_matching' needs a decoder that turns a canonical",
        ),
        (
            {
                "model": {"decoder": "gaussian_splat", "pose_dims": 6},
                "orientation": {"method": "template_matching", "ctf": True},
                "simulation": {"ctf": {"enabled": False}},
            },
            "orientation.ctf needs simulated particles with simulation.ctf.enabled",
        ),
        (
            {
                "model": {"decoder": "gaussian_splat", "pose_dims": 6},
                "orientation": {"method": "template_matching", "centre_from": "shift_head"},
            },
            "orientation.centre_from 'shift_head' needs a shift head in every variant",
        ),
        ({"affinity": {"source": "csv"}}, "affinity.source = 'csv' needs affinity.csv_path"),
        (
            {"structures": {"ids": ["1bxn"], "files": {"mine": "x.pdb; rm -rf /"}}},
            "contains characters not allowed",
        ),
    ],
)
def test_bad_config_one_line_error(schema_path, overrides, expected):
    with pytest.raises(InputError) as info:
        validated(schema_path, **overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


STAR_BY_NAME = {
    "particle_source": "star",
    "star": {"particles": "p.star", "classes": ["ribo", "proteasome", "other"]},
    "structures": {},
}


@pytest.mark.parametrize("prior", ["uniform", "none"])
def test_classes_known_by_name_only_take_a_prior_chosen_knowingly(schema_path, prior):
    gamma = {"gamma": {"value": 0}} if prior == "none" else {}
    config = validated(schema_path, **STAR_BY_NAME, affinity={"source": prior}, training=gamma)
    assert config["affinity"]["source"] == prior and class_names(config)[0] == "ribo"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"affinity": {"source": "none"}},  # gamma left at its default, 10
            "affinity.source 'none' trains without a prior, but variant 'avae' has "
            "training.gamma.value = 10.0; set it to 0",
        ),
        (
            {
                "affinity": {"source": "none"},
                "training": {"gamma": {"value": 0}},
                "variants": {"beta": {}, "avae": {"training": {"gamma": {"value": 2}}}},
            },
            "variant 'avae' has training.gamma.value = 2",
        ),
        ({"affinity": {"source": "soap"}}, "or uniform, or none: no prior"),
    ],
)
def test_no_prior_refuses_an_affinity_weight_in_one_line(schema_path, overrides, expected):
    with pytest.raises(InputError) as info:
        validated(schema_path, **STAR_BY_NAME, **overrides)
    assert expected in str(info.value) and "\n" not in str(info.value)


SPLAT = {"decoder": "gaussian_splat", "pose_dims": 6, "pose_encoding": "rotation6d"}
SHIFTED = {"method": "template_matching", "max_shift_angstrom": 30.0}


def test_a_variant_recentred_from_another_names_its_source(schema_path):
    again = {"training": {"recentre_from": "avae"}}
    variants = {"avae": {}, "again": again, "twice": {"training": {"recentre_from": "again"}}}
    config = validated(schema_path, model=SPLAT, orientation=SHIFTED, variants=variants)
    assert recentre_source(config, "again") == "avae"
    assert recentre_source(config, "twice") == "again"
    assert recentre_source(config, "avae") is None


@pytest.mark.parametrize(
    "variants, orientation, expected",
    [
        ({"a": {}, "b": {"training": {"recentre_from": "c"}}}, SHIFTED, "another variant of"),
        ({"a": {"training": {"recentre_from": "a"}}}, SHIFTED, "another variant of"),
        (
            {
                "a": {"training": {"recentre_from": "c"}},
                "b": {"training": {"recentre_from": "a"}},
                "c": {"training": {"recentre_from": "b"}},
            },
            SHIFTED,
            "not one re-centred from it",
        ),
        (
            {"a": {}, "b": {"training": {"recentre_from": "a"}}},
            {**SHIFTED, "max_shift_angstrom": 0.0},
            "max_shift_angstrom > 0",
        ),
        (
            {"a": {}, "b": {"training": {"recentre_from": "a"}}},
            {"method": "encoder"},
            "template_matching",
        ),
    ],
)
def test_recentring_from_nowhere_is_refused(schema_path, variants, orientation, expected):
    with pytest.raises(InputError) as info:
        validated(schema_path, model=SPLAT, orientation=orientation, variants=variants)
    assert "training.recentre_from" in str(info.value) and expected in str(info.value)


def test_template_matching_is_accepted_for_a_3d_splat_decoder(schema_path):
    model = {"decoder": "gaussian_splat", "pose_dims": 6, "pose_encoding": "rotation6d"}
    config = validated(schema_path, model=model, orientation={"method": "template_matching"})
    assert config["orientation"]["grid_step_deg"] == 10.0
    assert config["orientation"]["templates"] == 0


def test_variant_overrides_merge_onto_base(schema_path):
    config = validated(
        schema_path,
        training={"epochs": 3, "gamma": {"value": 5}},
        variants={"avae": {}, "beta_vae": {"training": {"gamma": {"value": 0}}}},
    )
    _, base = variant_sections(config, "avae")
    _, beta_vae = variant_sections(config, "beta_vae")
    assert base["gamma"]["value"] == 5 and beta_vae["gamma"]["value"] == 0
    assert beta_vae["epochs"] == 3 and beta_vae["gamma"]["schedule"] == "flat"


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("study: [unclosed\n")
    with pytest.raises(InputError, match="study.yaml: not valid YAML"):
        load_yaml(path)
    with pytest.raises(InputError, match="missing.yaml: file not found"):
        load_yaml(tmp_path / "missing.yaml")


CONFIGFILE_LINES = [
    (["--cores", "2", "--configfile", "a.yaml"], ["a.yaml"]),
    (["--configfile", "a.yaml", "b.yaml", "-n"], ["a.yaml", "b.yaml"]),
    (["--configfiles=a.yaml", "target"], ["a.yaml"]),
    (["--configfile", "a.yaml", "--configfile", "b.yaml"], ["b.yaml"]),  # the last wins
    (["--config", "study=x.yaml", "-C", "seed=1", "--directory", "w"], []),
    (["-n", "--configf", "a.yaml"], []),  # ambiguous (Python 3.11): Snakemake's to refuse
    (["-n", "--", "--configfile", "a.yaml"], []),  # a target after --
]


@pytest.mark.parametrize(("argv", "files"), CONFIGFILE_LINES)
def test_configfile_arguments_read_as_snakemake_reads_them(argv, files):
    """The same files as Snakemake's own command-line parser finds (none where it refuses)."""
    cli = pytest.importorskip("snakemake.cli")
    try:
        expected = [str(path) for path in cli.get_argument_parser().parse_args(argv).configfile]
    except SystemExit:
        expected = []
    assert configfile_arguments(argv) == expected
    if "--configf" not in argv:  # the abbreviation's fate depends on the Python version
        assert expected == files


def test_a_configfile_that_is_a_list_ends_the_run_in_one_line_naming_it(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("study: t\n")
    bad.write_text("- a\n- b\n")
    refuse_bad_configfiles(["-n", "--configfile", str(good)])  # a mapping: nothing to say
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as info:
        refuse_bad_configfiles(["--configfile", str(good), str(bad), "--cores", "1"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: ")
    assert "a study config is a mapping of sections" in err and "holds a list" in err


def test_config_readme_documents_every_key(repo, schema_path):
    """Every key of the schema appears in config/README.md."""
    readme = (repo / "config" / "README.md").read_text()
    schema = load_yaml(schema_path)

    def keys(node, prefix=""):
        node = node.get("allOf", [node])[0] if "allOf" in node else node
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        for name, sub in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            yield path
            yield from keys(sub, f"{path}.")

    for path in keys(schema):
        leaf = path.replace("training.beta.", "training.<beta,gamma>.").replace(
            "training.gamma.", "training.<beta,gamma>."
        )
        if leaf.endswith(("<beta,gamma>.value",)):
            leaf = path
        section = schema["properties"].get(path, {}).get("type") == "object" or path in (
            "model",
            "training",
            "affinity.soap",
            "simulation.ctf",
            "missing_wedge",
            "training.beta",
            "training.gamma",
            "extraction.tomograms.tomogram",
            "extraction.tomograms.particles",
        )
        if section and path != "variants":
            continue
        assert f"`{leaf}`" in readme, f"config/README.md does not document {path}"


@pytest.mark.parametrize(
    "overrides, wedge",
    [
        ({}, 60.0),  # simulated particles: the schema's default wedge
        ({"missing_wedge": {"tilt_max_deg": 45.0}}, 45.0),
        ({"missing_wedge": {"enabled": False}}, None),
        ({"particle_source": "tomograms"}, 60.0),  # a tilt series always leaves one
        ({"particle_source": "tomograms", "missing_wedge": {"tilt_max_deg": 50.0}}, 50.0),
        ({"particle_source": "characters", "affinity": {"source": "glyph"}}, None),  # 2-D
    ],
)
def test_one_wedge_setting_for_every_source(schema_path, overrides, wedge):
    """Every stage (simulator, model, matching, averages) reads the particles' wedge here."""
    assert particle_wedge(validated(schema_path, **overrides)) == wedge


def test_the_model_measures_the_wedge_only_when_asked(schema_path):
    variants = {"avae": {}, "measured": {"model": {"measure_wedge": True}}}
    config = validated(schema_path, missing_wedge={"tilt_max_deg": 50.0}, variants=variants)
    assert model_settings(config, "avae")["wedge_tilt_max_deg"] is None
    assert model_settings(config, "measured")["wedge_tilt_max_deg"] == 50.0


def test_the_model_measures_the_ctf_of_the_simulated_microscope_only_when_asked(schema_path):
    variants = {"avae": {}, "measured": {"model": {"measure_ctf": True}}}
    config = validated(schema_path, variants=variants)
    assert model_settings(config, "avae")["microscope"] is None
    microscope = model_settings(config, "measured")["microscope"]
    assert microscope == {
        "voxel_size_angstrom": config["density"]["voxel_size_angstrom"],
        "voltage_kv": 300.0,
        "cs_mm": 2.7,
        "amplitude_contrast": 0.07,
    }


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"simulation": {"missing_wedge": {"tilt_max_deg": 50}}}, "simulation.missing_wedge has"),
        ({"tomograms": {"tilt_min_deg": -50}}, "tomograms.tilt_min_deg has moved"),
        ({"model": {"wedge_tilt_max_deg": 60}}, "model.wedge_tilt_max_deg has moved"),
        (
            {"variants": {"v": {"model": {"wedge_tilt_max_deg": 60}}}},
            "variants.v.model.wedge_tilt_max_deg has moved; the setting is now model.measure_wedge",
        ),
        (
            {"missing_wedge": {"enabled": False}, "model": {"measure_wedge": True}},
            "sets model.measure_wedge, but the particles have no missing wedge",
        ),
        (
            {"particle_source": "tomograms", "missing_wedge": {"enabled": False}},
            "a tilt series always leaves a wedge",
        ),
        (
            {"simulation": {"ctf": {"enabled": False}}, "model": {"measure_ctf": True}},
            "sets model.measure_ctf, but the particles carry no CTF the study knows",
        ),
        (
            {
                "model": {"measure_ctf": True, "decoder": "gaussian_splat", "pose_dims": 6},
                "orientation": {"method": "template_matching"},
            },
            "sets model.measure_ctf, so its decoder renders the density without the CTF; set "
            "orientation.ctf: true",
        ),
    ],
)
def test_old_wedge_keys_and_contradictions_say_where_the_setting_lives(
    schema_path, overrides, expected
):
    with pytest.raises(InputError, match=expected.replace(".", r"\.")):
        validated(schema_path, **overrides)


def test_a_novelty_score_from_template_fits_needs_template_matching(schema_path):
    evaluation = {"novelty_score": "mahalanobis_fit"}
    with pytest.raises(InputError, match="novelty_score 'mahalanobis_fit' needs"):
        validated(schema_path, model=SPLAT, evaluation=evaluation)
    config = validated(schema_path, model=SPLAT, orientation=SHIFTED, evaluation=evaluation)
    assert config["evaluation"]["novelty_score"] == "mahalanobis_fit"
