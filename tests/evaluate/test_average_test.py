"""What the class-average tests can see (cryoavae.evaluate.average_test and
tools/calibrate_average_test.py): averages with known orientation errors, scored by both
ratios, on particles whose truth is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cryoavae.evaluate.average_test import calibration_table, spoilt_orientations
from cryoavae.geometry.rotations import geodesic_deg, matrices_to_relion_angles

ROOT = Path(__file__).resolve().parents[2]


def test_spoilt_orientations_are_off_by_exactly_the_stated_angle():
    from scipy.spatial.transform import Rotation

    truth = Rotation.random(40, random_state=1).as_matrix()
    cases = spoilt_orientations(truth, np.random.default_rng(0))
    np.testing.assert_allclose(geodesic_deg(cases["true"], truth), 0.0, atol=1e-3)
    np.testing.assert_allclose(geodesic_deg(cases["off_30deg"], truth), 30.0, atol=1e-3)
    flipped = geodesic_deg(cases["half_flipped"], truth)
    np.testing.assert_allclose(flipped[::2], 180.0, atol=1e-3)
    np.testing.assert_allclose(flipped[1::2], 0.0, atol=1e-3)
    assert np.median(geodesic_deg(cases["random"], truth)) > 90.0


def _particles(tmp_path, n=40):
    """One class of ``n`` asymmetric-blob particles (SNR 2, wedge +-60), its map, truth."""
    from scipy.spatial.transform import Rotation
    from volume_fixtures import blobs, measured

    from cryoavae import particles as P

    rng = np.random.default_rng(3)
    volume = blobs(rng)
    truth = Rotation.random(n, random_state=4).as_matrix()
    P.write_stack(tmp_path / "p.mrcs", measured(volume, truth, rng, snr=2.0), 10.0)
    table = P.particle_table("p.mrcs", np.ones(n, int), np.repeat("a", n), np.repeat("train", n))
    table[list(P.ANGLES)] = matrices_to_relion_angles(truth)
    return table, volume, truth


def test_right_orientations_score_one_and_large_errors_fail_the_area_test(tmp_path):
    from cryoavae import particles as P
    from cryoavae.evaluate.seeds import AREA_RATIO_PASS

    table, volume, truth = _particles(tmp_path)
    P.write_particle_table(tmp_path / "p.star", table)
    images = P.ParticleImages(table, tmp_path / "p.star")
    members = {"a": np.arange(len(table))}
    result = calibration_table(images, members, truth, None, {"a": volume}, 10.0, 60.0, seed=0)
    ratio = result.set_index("case")["area_ratio"]
    assert ratio["true"] == 1.0
    assert ratio["off_5deg"] > AREA_RATIO_PASS
    for wrong in ("off_90deg", "half_flipped", "random"):
        assert ratio[wrong] < AREA_RATIO_PASS, wrong
    resolution = result.set_index("case")["resolution_ratio"]
    assert resolution["true"] == 1.0 and resolution["random"] > 1.5


def test_the_tool_writes_both_tables_for_a_studys_particles(tmp_path):
    from cryoavae import particles as P
    from cryoavae.structures.density import write_map

    table, volume, _ = _particles(tmp_path / "study" / "seed42" / "particles", n=12)
    P.write_particle_table(tmp_path / "study" / "seed42" / "particles" / "particles.star", table)
    (tmp_path / "study" / "maps").mkdir()
    write_map(tmp_path / "study" / "maps" / "a.mrc", volume, 10.0)
    spec = importlib.util.spec_from_file_location(
        "calibrate_average_test", ROOT / "tools" / "calibrate_average_test.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(tmp_path / "study")])
    text = (tmp_path / "average_test_calibration" / "summary.md").read_text()
    assert "`python tools/calibrate_average_test.py " in text
    assert "| class | true | 5° off |" in text and "| a | 1.00 |" in text
    assert text.count("| a |") == 2  # the resolution table and the area table


def test_a_study_without_particles_gets_one_line(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "calibrate_average_test", ROOT / "tools" / "calibrate_average_test.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit, match="no particle table"):
        tool.main([str(tmp_path / "nothing")])
