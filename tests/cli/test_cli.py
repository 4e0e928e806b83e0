"""The `cryoavae` command: every subcommand's --help shows an example, and apply and
convert-legacy take the arguments of the modules they hand them to."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cryoavae.cli import main


def run(argv, capsys) -> tuple[int, str, str]:
    """main(argv) as the console would run it: exit status, stdout, stderr."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's --help and errors, command_line_errors
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    ("command", "shows"),
    [
        ("init", "cryoavae init --star data/particles.star"),
        ("info", "cryoavae info results/my_study/seed0/models/avae/model.pt"),
        ("apply", "cryoavae apply --model results/mine/seed0/models/avae/model.pt"),
        ("convert-legacy", "cryoavae convert-legacy affinity-vae/tests/testdata_mrc"),
    ],
)
def test_every_subcommand_explains_itself_with_an_example(command, shows, capsys):
    status, out, _ = run([command, "--help"], capsys)
    assert status == 0
    assert out.startswith(f"usage: cryoavae {command}")
    assert "example" in out and shows in out


def test_the_command_lists_its_subcommands_and_asks_for_one(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    for command in ("init", "info", "apply", "convert-legacy"):
        assert f"    {command}" in out
    status, _, err = run([], capsys)
    assert status == 2 and "usage: cryoavae" in err


def test_apply_hands_its_arguments_to_the_module_and_keeps_its_one_line_errors(tmp_path, capsys):
    argv = ["--model", str(tmp_path / "missing.pt"), "--reference", str(tmp_path / "l.tsv")]
    argv += ["--particles", str(tmp_path / "p.star"), "--out", str(tmp_path / "o.star")]
    status, _, err = run(["apply", *argv], capsys)
    assert status == 1
    assert err.startswith("cryoavae apply: error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.star").exists()
    status, _, err = run(["apply", "--model", "m.pt"], capsys)
    assert status == 2 and "the following arguments are required: --reference" in err


def test_convert_legacy_converts_as_the_module_does(tmp_path, capsys):
    folder = tmp_path / "legacy"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(folder / f"{'ab'[i % 2]}_{i}.npy", rng.normal(size=(8, 8)))
    (folder / "classes.csv").write_text("a,b\n")
    status, out, _ = run(["convert-legacy", str(folder), str(tmp_path / "out")], capsys)
    assert status == 0
    assert (tmp_path / "out" / "particles.star").exists()
    assert "particle_source: star" in out and "classes: [a, b]" in out


def test_python_m_runs_the_same_command():
    """Without the installed entry point (a checkout on PYTHONPATH): python -m cryoavae.cli."""
    result = subprocess.run(
        [sys.executable, "-m", "cryoavae.cli", "info", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: cryoavae info")
