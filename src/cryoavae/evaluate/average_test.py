"""How much orientation error the class-average tests can see, measured with errors put in by hand.

A class average tests a pose only as far as its resolution can tell a right average from a wrong
one. At 10 Å per voxel with a 32-voxel box an average of roughly right orientations already
reaches Nyquist, so the resolution at FSC 0.5 stops falling as the orientations get worse, and a
protein a few voxels across looks alike in every orientation. This module measures it instead of
assuming it: each class's particles are averaged with their true orientations and then with the
same orientations spoilt in known ways (every particle off by a fixed angle about a random axis,
half of them turned by 180° about one axis of the particle, the way a near-symmetric protein is
matched wrongly, and random orientations), and each average's FSC against the class's map is read
both ways: the resolution at FSC 0.5 and the curve's area. The ratios to the true-orientation
average say which errors each test fails, and so where a pass line belongs
(:data:`cryoavae.evaluate.seeds.AREA_RATIO_PASS`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from cryoavae.evaluate.averages import aligned_to, fsc, fsc_area, resolution_angstrom
from cryoavae.evaluate.seeds import AREA_RATIO_PASS
from cryoavae.orientation.averaging import class_average
from cryoavae.particles import ParticleImages

__all__ = ["ERRORS_DEG", "calibration_markdown", "calibration_table", "spoilt_orientations"]

ERRORS_DEG = (5, 10, 20, 30, 45, 90)  # the fixed errors tried, degrees about a random axis


def spoilt_orientations(rotations: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The orientations ``(n, 3, 3)`` (RELION's ``A``) as they are (``true``) and spoilt:
    ``off_<a>deg``, each turned by ``a`` degrees about its own random axis; ``half_flipped``,
    every other particle turned by 180° about one random axis of the particle; ``random``."""
    n = len(rotations)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    cases = {"true": rotations}
    for angle in ERRORS_DEG:
        error = Rotation.from_rotvec(axes * np.radians(angle)).as_matrix()
        cases[f"off_{angle}deg"] = error @ rotations
    axis = rng.normal(size=3)
    flip = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.pi).as_matrix()
    flipped = rotations.copy()
    flipped[::2] = rotations[::2] @ flip.T
    cases["half_flipped"] = flipped
    cases["random"] = Rotation.random(n, random_state=rng).as_matrix()
    return cases


def calibration_table(
    images: ParticleImages,
    members: dict[str, np.ndarray],
    rotations: np.ndarray,
    shifts_px: np.ndarray | None,
    maps: dict[str, np.ndarray],
    voxel_size_angstrom: float,
    tilt_max_deg: float | None,
    seed: int,
) -> pd.DataFrame:
    """One row per class and case of :func:`spoilt_orientations`: the average's resolution at
    FSC 0.5 (Å) and FSC area against the class's map, each over the true-orientation average's
    (``resolution_ratio``, ``area_ratio``). ``members[c]`` are class ``c``'s rows of ``images``,
    ``rotations`` and ``shifts_px`` (x, y, z voxels, where each particle's centre sits) line up
    with ``images``."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, rows_c in members.items():
        shifts = None if shifts_px is None else shifts_px[rows_c]
        for case, turns in spoilt_orientations(rotations[rows_c], rng).items():
            average = class_average(images, rows_c, turns, tilt_max_deg, shifts)
            frequency, curve = fsc(aligned_to(average, maps[c])[0], maps[c])
            rows.append(
                {
                    "class_name": c,
                    "case": case,
                    "n_particles": len(rows_c),
                    "fsc05_angstrom": resolution_angstrom(
                        frequency, curve, 0.5, voxel_size_angstrom
                    ),
                    "fsc_area": fsc_area(curve),
                }
            )
    table = pd.DataFrame(rows)
    true = table[table["case"] == "true"].set_index("class_name")
    table["resolution_ratio"] = table["fsc05_angstrom"] / table["class_name"].map(
        true["fsc05_angstrom"]
    )
    table["area_ratio"] = table["fsc_area"] / table["class_name"].map(true["fsc_area"])
    return table


def calibration_markdown(table: pd.DataFrame, command: str) -> str:
    """Both ratios per class (rows) and case (columns) as a Markdown fragment, the failures of
    each test marked: a resolution ratio above 1.5, an area ratio below the pass line."""
    cases = list(dict.fromkeys(table["case"]))
    lines = [f"Written by `{command}`:", ""]
    for value, title, fails in (
        ("resolution_ratio", "Resolution at FSC 0.5 over the true-orientation average's", "> 1.5"),
        ("area_ratio", "FSC area over the true-orientation average's", f"< {AREA_RATIO_PASS}"),
    ):
        wide = table.pivot(index="class_name", columns="case", values=value)[cases]
        lines += [
            f"{title} (**bold**: fails, {fails}):",
            "",
            "| class | " + " | ".join(map(_case_title, cases)) + " |",
            "|---|" + "---|" * len(cases),
        ]
        for c, row in wide.iterrows():
            failed = row > 1.5 if value == "resolution_ratio" else row < AREA_RATIO_PASS
            cells = [
                f"**{v:.2f}**" if bad else f"{v:.2f}" for v, bad in zip(row, failed, strict=True)
            ]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _case_title(case: str) -> str:
    """``off_20deg`` -> ``20° off``; ``half_flipped`` -> ``half flipped``."""
    if case.startswith("off_"):
        return case[len("off_") : -len("deg")] + "° off"
    return case.replace("_", " ")
