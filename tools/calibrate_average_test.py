"""Which orientation errors do the class-average tests fail? Averages of a study's own particles
with their true orientations, then with errors put in by hand (cryoavae.evaluate.average_test).

Usage: ``python tools/calibrate_average_test.py results/<study> [--seed K] [--tilt-max-deg 60]
[--out DIR]``

Reads ``seed<K>/particles/particles.star`` (simulated particles: true angles and offsets) and
``maps/<class>.mrc`` of the study; every seen class (split train, val or test) is averaged.
Writes ``DIR/average_test_calibration/summary.md`` (the two ratio tables, with this command) and
``calibration.tsv`` beside it, ``DIR`` defaulting to the study's parent folder, so that
``python tools/update_readme_results.py --results DIR average_test_calibration`` copies the
fragment into a document.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from cryoavae.core.atomic import atomic_path
from cryoavae.evaluate.average_test import calibration_markdown, calibration_table
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.particles import (
    ANGLES,
    CLASS_NAME,
    SPLIT,
    ParticleImages,
    read_particle_table,
    recorded_offsets_px,
    table_voxel_size,
)
from cryoavae.structures.density import read_map

STUDY_NAME = "average_test_calibration"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="results/<study> of a simulated study")
    parser.add_argument("--seed", type=int, default=42, help="which seed's particles (42)")
    parser.add_argument("--tilt-max-deg", type=float, default=60.0, help="the missing wedge")
    parser.add_argument("--out", type=Path, help="folder for average_test_calibration/")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    star = args.study / f"seed{args.seed}" / "particles" / "particles.star"
    if not star.is_file():
        raise SystemExit(f"{star}: no particle table; run the study with seed {args.seed} first")
    table = read_particle_table(star)
    voxel = table_voxel_size(table, star)
    names, split = table[CLASS_NAME].astype(str), table[SPLIT].astype(str)
    seen = sorted(set(names[split.isin(["train", "val", "test"])]))
    maps = {c: read_map(args.study / "maps" / f"{c}.mrc")[0] for c in seen}
    members = {c: np.flatnonzero((names == c) & split.isin(["train", "val", "test"])) for c in seen}
    shifts = recorded_offsets_px(table, voxel)
    rotations = relion_angles_to_matrices(table[list(ANGLES)].to_numpy(np.float64))
    images = ParticleImages(table, star)
    result = calibration_table(
        images, members, rotations, shifts, maps, voxel, args.tilt_max_deg, args.seed
    )
    out = (args.out or args.study.parent) / STUDY_NAME
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "tools/calibrate_average_test.py", *argv])
    with atomic_path(out / "calibration.tsv") as tmp:
        result.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    with atomic_path(out / "summary.md") as tmp:
        Path(tmp).write_text(calibration_markdown(result, command))
    print(out / "summary.md")


if __name__ == "__main__":
    main()
