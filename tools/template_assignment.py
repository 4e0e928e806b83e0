"""Is a class's orientation error the search's, or the template it was matched against?

Usage: ``python tools/template_assignment.py results/<study>/seed<k> [--split val]``

For each variant's ``models/<variant>/latents.tsv`` (a study with ``orientation.method:
template_matching`` and one template per seen class) and each seen class: the share of its
held-out particles (``--split``: ``val``, ``test`` or ``val,test``) matched against the template
most of its ``train`` particles were matched against (its own), and the fraction within 20° of
the truth among those and among the rest, scored as the study scores it (the class's frame
fitted on its train particles, modulo its symmetry in ``maps/symmetry.json``). A class whose own
template's particles are nearly all right and whose others are wrong loses its orientations to
the template choice, not to the search. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.geometry.point_groups import symmetry_group
from cryoavae.geometry.rotations import align_rotations, geodesic_deg, relion_angles_to_matrices
from cryoavae.inference.latents import INFERRED_ANGLES, read_latents
from cryoavae.structures.symmetry import read_symmetry

TRUE_ANGLES = ["angle_rot", "angle_tilt", "angle_psi"]
WITHIN_DEG = 20.0


def class_rows(latents: pd.DataFrame, symmetry: dict, splits: list[str]) -> list[dict]:
    """One row per seen class: held-out count, own-template share, within 20° overall, among
    the own template's particles and among the others (NaN where there are none)."""
    names = latents["class_name"].astype(str).to_numpy()
    split = latents["split"].astype(str).to_numpy()
    template = latents["orientation_template"].to_numpy()
    inferred = relion_angles_to_matrices(latents[list(INFERRED_ANGLES)].to_numpy(np.float64))
    true = relion_angles_to_matrices(latents[TRUE_ANGLES].to_numpy(np.float64))
    rows = []
    for c in sorted(set(names[split == "train"])):
        train, held = (names == c) & (split == "train"), (names == c) & np.isin(split, splits)
        if held.sum() == 0:
            continue
        own = np.bincount(template[train]).argmax()
        q, _ = align_rotations(inferred[train], true[train], symmetry.get(c))
        copies = np.einsum("nij,kjl->nkil", true[held], symmetry_group(symmetry.get(c)))
        right = geodesic_deg((inferred[held] @ q)[:, None], copies).min(axis=1) <= WITHIN_DEG
        mine = template[held] == own
        rows.append(
            {
                "class": c,
                "held-out": int(held.sum()),
                "own template": mine.mean(),
                "within 20°": right.mean(),
                "own: within 20°": right[mine].mean() if mine.any() else np.nan,
                "others: within 20°": right[~mine].mean() if (~mine).any() else np.nan,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seed_dir", type=Path)
    parser.add_argument("--split", default="val", help="comma-separated splits to score")
    args = parser.parse_args()
    symmetry_path = args.seed_dir.parent / "maps" / "symmetry.json"
    symmetry = read_symmetry(symmetry_path) if symmetry_path.exists() else {}
    tables = []
    for path in sorted(args.seed_dir.glob("models/*/latents.tsv")):
        table = pd.DataFrame(class_rows(read_latents(path), symmetry, args.split.split(",")))
        table.insert(0, "variant", path.parent.name)
        tables.append(table)
    if not tables:
        raise SystemExit(f"error: {args.seed_dir}: no models/*/latents.tsv")
    print(pd.concat(tables).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
