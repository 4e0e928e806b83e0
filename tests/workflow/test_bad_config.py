"""Bad configs a new user writes: each refused before any job, with one line naming the key.

The number cases are generated from the schema itself, so a key added later is covered.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cryoavae.core.config import load_study_file, validate_config
from cryoavae.core.errors import InputError
from cryoavae.core.schema import schema

REPO = Path(__file__).resolve().parents[2]
BASE = {"study": "t", "structures": {"ids": ["1bxn", "1s3x", "3h84"], "unseen": ["3h84"]}}


def refused(config: dict) -> str:
    """The one-line message validate_config refuses ``config`` with."""
    with pytest.raises(InputError) as info:
        validate_config(copy.deepcopy(config))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def with_value(path: list, value) -> dict:
    """BASE with ``value`` at ``path`` (keys; an int indexes a one-item list)."""
    config = copy.deepcopy(BASE)
    node = config
    for key, nxt in zip(path, [*path[1:], None], strict=True):
        if nxt is None:
            node[key] = value
        elif isinstance(nxt, int):
            node[key] = [None]
            node = node[key]
        else:
            node = node.setdefault(key, {})
    return config


# --------------------------------------------------------------------------- YAML files


def snakemake_dry_run(configfile: Path, workdir: Path, timeout: float = 60):
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "-n", "--cores", "1"]
    cmd += ["--configfile", str(configfile), "--directory", str(workdir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def assert_one_line_refusal(result, *words: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("study: t\nseed: 1\nseed: 2\n", ["line 3", "'seed' is repeated"]),
        ("study: t\nsimulation:\n  snr: 1\n  snr: 2\n", ["'snr' is repeated"]),
        ("study: t\nstudy: u\n", ["'study' is repeated"]),
    ],
)
def test_repeated_keys_are_refused_through_snakemake(tmp_path, text, words):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    work = tmp_path / "work"
    result = snakemake_dry_run(path, work)
    assert_one_line_refusal(result, "study.yaml", *words)
    assert not (work / "results").exists()


def test_a_yaml_bomb_is_refused_without_expanding(tmp_path):
    lines = ["study: bomb", 'l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for k in range(1, 9):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]")
    lines.append("structures: {ids: *l8}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    # expanded, the aliases make 9**9 strings: minutes and gigabytes, so a run that expanded
    # them ends in subprocess.TimeoutExpired (a failure) rather than a slow pass or a hang
    result = snakemake_dry_run(path, tmp_path / "work", timeout=60)
    assert_one_line_refusal(result, "bomb.yaml", "aliases expand to")
    with pytest.raises(InputError, match="aliases expand to"):
        load_study_file(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- study: t\n- seed: 1\n", ["a mapping of sections", "list"]),
        ("just a sentence\n", ["a mapping of sections", "str"]),
        ("study: [unclosed\n", ["not valid YAML", "line 2"]),
        ("a: &a [*a]\n", ["not valid YAML"]),
    ],
)
def test_files_that_are_not_a_study_config(tmp_path, text, words):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_study_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert all(word in message for word in words), message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- a\n- b\n", ["a study config is a mapping of sections", "holds a list"]),
        ('["a", "b"]\n', ["a study config is a mapping of sections", "holds a list"]),
        ("study: [unclosed\n", ["not valid YAML", "line 2"]),
    ],
)
def test_a_configfile_snakemake_itself_refuses_is_named_in_one_line(tmp_path, text, words):
    """Snakemake loads --configfile before the Snakefile and refuses these without naming the
    file; the workflow profile reads them first, so the one line names the user's file."""
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    work = tmp_path / "work"
    result = snakemake_dry_run(path, work)
    assert_one_line_refusal(result, f"{path}: ", *words)
    assert "WorkflowError" not in result.stderr
    assert not work.exists()  # not even .snakemake: nothing ran


# --------------------------------------------------------------------------- names and paths

BAD_NAMES = ["x\n", "../x", "a/b", "x" * 65, "x\x00y", ".hidden", "", "a b", "x\ty"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_become_paths_are_refused(name):
    assert "study" in refused({**BASE, "study": name})
    assert "variants" in refused({**BASE, "variants": {name: {}}})
    files = {"structures": {"ids": ["1bxn", "1s3x"], "files": {name: "mine.pdb"}}}
    assert "structures.files" in refused({**BASE, **files})
    assert "apply.particle_sets" in refused({**BASE, "apply": {"particle_sets": {name: "a.star"}}})


@pytest.mark.parametrize("pdb_id", ["1abc\n", "1ab", "1abcd", "abcd", "1a/c", "../1"])
def test_pdb_ids_are_four_characters_exactly(pdb_id):
    message = refused({**BASE, "structures": {"ids": ["1bxn", pdb_id]}})
    assert "structures.ids[1]" in message


@pytest.mark.parametrize("char", ["\n", "/", ".", "ab", " "])
def test_character_classes_are_one_letter_or_digit(char):
    config = {"study": "t", "particle_source": "characters", "affinity": {"source": "glyph"}}
    assert "characters.seen[1]" in refused({**config, "characters": {"seen": ["a", char]}})


@pytest.mark.parametrize("path", ["x.pdb; rm -rf /", "x\n.pdb", "$(whoami).pdb", "a\x1bb.pdb"])
def test_input_paths_cannot_carry_shell_syntax_or_control_characters(path):
    config = {**BASE, "structures": {"ids": ["1bxn"], "files": {"mine": path}}}
    assert "structures.files.mine" in refused(config)


# --------------------------------------------------------------------------- numbers


def numeric_keys() -> list[tuple[list, dict]]:
    """Every key the schema types as integer or number: (path, its schema)."""
    root = schema()

    def resolve(node):
        while "$ref" in node or ("allOf" in node and len(node["allOf"]) == 1):
            if "$ref" in node:
                node = root["$defs"][node["$ref"].split("/")[-1]]
            else:
                node = node["allOf"][0]
        return node

    found = []

    def walk(node, path):
        node = resolve(node)
        kinds = node.get("type", [])
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if {"integer", "number"} & set(kinds):
            found.append((path, node))
        for name, sub in node.get("properties", {}).items():
            walk(sub, [*path, name])
        if "items" in node:
            walk(node["items"], [*path, 0])

    walk(root, [])
    return found


NUMERIC_KEYS = numeric_keys()


def dotted(path: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def test_every_numeric_key_has_bounds_the_code_can_use():
    assert len(NUMERIC_KEYS) > 40
    for path, node in NUMERIC_KEYS:
        assert "minimum" in node or "exclusiveMinimum" in node, dotted(path)
        assert "maximum" in node or "exclusiveMaximum" in node, dotted(path)


@pytest.mark.parametrize(("path", "node"), NUMERIC_KEYS, ids=[dotted(p) for p, _ in NUMERIC_KEYS])
def test_wrong_numbers_are_refused_naming_the_key(path, node):
    kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
    integer = "integer" in kinds
    low = node.get("minimum", node.get("exclusiveMinimum"))
    zero_allowed = "minimum" in node and node["minimum"] <= 0
    example = node.get("default", low + 1 if integer else low + 0.5)
    if not isinstance(example, int | float) or isinstance(example, bool):
        example = low + 1
    bad = {
        "a string": "12",
        "below the minimum": low - 1 if integer else low - 0.5,
        "NaN": math.nan,
        "infinity": math.inf,
        "a huge value": 10**30 if integer else 1e300,
    }
    if integer:
        bad["a float for an integer"] = float(int(example) if int(example) else 2)
        bad["a bool"] = True
    if not zero_allowed:
        bad["zero"] = 0
    for what, value in bad.items():
        message = refused(with_value(path, value))
        assert f"{dotted(path)} = " in message, (what, message)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("training", "epochs", 2.0), ("density", "box_size_px", 32.0), ("training", "epochs", 10**6)],
)
def test_the_reported_cases(section, key, value):
    assert f"{section}.{key} = {value!r} is invalid" in refused({**BASE, section: {key: value}})


def test_a_seed_too_large_for_the_generators_is_refused_before_any_job():
    assert "seed = 18446744073709551616 is invalid; expected <= 4294967295" in refused(
        {**BASE, "seed": 2**64}
    )


def test_variant_overrides_are_held_to_the_same_types():
    message = refused({**BASE, "variants": {"fast": {"training": {"epochs": 2.0}}}})
    assert "variants.fast.training.epochs = 2.0 is invalid" in message
