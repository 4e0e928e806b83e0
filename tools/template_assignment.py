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

from cryoavae.evaluate.orientation import aligned_orientation_metrics
from cryoavae.inference.latents import read_latents
from cryoavae.structures.symmetry import read_symmetry

WITHIN_DEG = 20.0


def class_rows(latents: pd.DataFrame, symmetry: dict, splits: list[str]) -> list[dict]:
    """One row per seen class: held-out count, own-template share, within 20° overall, among
    the own template's particles and among the others (NaN where there are none). The errors
    are the evaluation's own
    (:func:`~cryoavae.evaluate.orientation.aligned_orientation_metrics`)."""
    names = latents["class_name"].astype(str).to_numpy()
    split = latents["split"].astype(str).to_numpy()
    template = latents["orientation_template"].to_numpy()
    known = np.isfinite(latents[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy()).all(axis=1)
    train, held = split == "train", np.isin(split, splits) & known
    seen = sorted(set(names[train]))
    _, _, errors = aligned_orientation_metrics(latents, names, train, held, seen, symmetry)
    rows = []
    for c in seen:
        error = errors.loc[errors["class_name"] == c, "error_deg"].to_numpy()
        if len(error) == 0:
            continue
        right = error <= WITHIN_DEG
        own = np.bincount(template[train & (names == c)]).argmax()
        mine = template[held & (names == c)] == own  # the errors' rows, in table order
        rows.append(
            {
                "class": c,
                "held-out": len(error),
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
