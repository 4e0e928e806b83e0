"""The benchmark script runs in quick mode and reports the figures the issues name, so that it
cannot rot unnoticed between the full runs that README quotes."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMED_FIGURES = {
    "soap_affinity_seconds_shrec10",
    "simulate_subtomograms_per_s_32",
    "train_samples_per_s_3d32",
    "train_samples_per_s_2d64",
    "train_loop_efficiency",
    "train_startup_seconds_10k",
    "train_peak_rss_mb_10k",
    "star_source_peak_rss_growth_mb",
    "embed_particles_per_s_32",
    "ddp_cpu_2rank_speedup",
    "simulate_tomogram_seconds_512",
    "pose_search_epoch_ratio_3d32",
    "splat_single_pose_epoch_ratio_3d32",
    "match_particles_per_s_32",
    "match_efficiency_32",
}


@pytest.mark.slow
def test_quick_benchmarks_print_one_json_figure_per_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = [json.loads(line) for line in result.stdout.splitlines()]
    names = [f["name"] for f in figures]
    assert len(names) == len(set(names)), "figure names repeat"
    assert NAMED_FIGURES <= set(names), NAMED_FIGURES - set(names)
    for figure in figures:
        assert set(figure) == {"name", "value", "unit"}, figure
        assert math.isfinite(figure["value"]) and figure["value"] >= 0, figure
