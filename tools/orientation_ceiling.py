"""How well can these particles' orientations be found at all? Match each against its class's
noise-free map.

Usage: ``python tools/orientation_ceiling.py results/<study>/seed<k> [--per-class 100] [--no-ctf]
[--symmetry maps/symmetry.json] [--max-shift-angstrom 30]``

The study's own val particles of every seen class are matched (``cryoavae.orientation.matcher``)
against the map they were simulated from, as they were measured (the study's missing wedge and,
unless ``--no-ctf``, each particle's CTF), and the found rotation is compared with the true one
(modulo the point groups of ``maps/symmetry.json`` when the study fitted them). No model is
involved: this is the ceiling a model's orientation could reach on these particles, the
orientation counterpart of the true-pose class average. Prints one line per class and one overall.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np

from cryoavae.core.config import particle_wedge, validate_config
from cryoavae.core.errors import InputError
from cryoavae.geometry.ctf import CtfModel
from cryoavae.geometry.rotations import geodesic_deg, relion_angles_to_matrices
from cryoavae.orientation.matcher import TemplateMatcher
from cryoavae.particles import (
    ANGLES,
    CLASS_NAME,
    DEFOCUS,
    SPLIT,
    ParticleImages,
    read_particle_table,
)
from cryoavae.structures.symmetry import read_symmetry


def _max_shift_angstrom(config: dict, args) -> float:
    """The translation search's radius: asked for, the study's own, or 3 sd of its simulated
    pick error (0 for centred particles)."""
    if args.max_shift_angstrom is not None:
        return args.max_shift_angstrom
    own = config["orientation"]["max_shift_angstrom"]
    simulated = 3 * config["simulation"]["shift_sd_angstrom"]
    return own or (simulated if config.get("particle_source") == "simulate" else 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a study's results folder")
    parser.add_argument("--per-class", type=int, default=100, help="val particles per class")
    parser.add_argument("--no-ctf", action="store_true", help="leave the CTF out of the match")
    parser.add_argument(
        "--max-shift-angstrom",
        type=float,
        help="how far to search each particle's centre (default: the study's own search, else 3 "
        "sd of its simulated pick error)",
    )
    parser.add_argument(
        "--symmetry", type=Path, help="a symmetry.json (default: the study's maps/symmetry.json)"
    )
    args = parser.parse_args()
    try:
        config = validate_config(_provenance_config(args.results))
        star = args.results / "particles" / "particles.star"
        table = read_particle_table(star)
        images = ParticleImages(table, star)
        if args.symmetry and not args.symmetry.is_file():
            raise InputError(f"{args.symmetry}: symmetry file not found")
        shared = args.results if (args.results / "maps").is_dir() else args.results.parent
        symmetry = args.symmetry or shared / "maps" / "symmetry.json"
        groups = read_symmetry(symmetry) if args.symmetry or symmetry.is_file() else {}
        names = table[CLASS_NAME].astype(str).to_numpy()
        split = table[SPLIT].astype(str).to_numpy()
        seen = sorted(set(names[split == "train"]))
        maps = np.stack([_read_map(shared / "maps" / f"{c}.mrc") for c in seen])
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    simulation = config["simulation"]
    tilt = particle_wedge(config)
    ctf = simulation["ctf"]
    microscope = None
    if ctf["enabled"] and not args.no_ctf:
        keys = ("voltage_kv", "cs_mm", "amplitude_contrast")
        voxel = config["density"]["voxel_size_angstrom"]
        microscope = CtfModel(voxel, **{k: ctf[k] for k in keys})
    rows = np.concatenate(
        [np.flatnonzero((names == c) & (split == "val"))[: args.per_class] for c in seen]
    )
    template = np.searchsorted(seen, names[rows])
    started = time.perf_counter()
    max_shift_px = _max_shift_angstrom(config, args) / config["density"]["voxel_size_angstrom"]
    matcher = TemplateMatcher(maps, tilt, microscope, max_shift_px=max_shift_px)
    defocus = table[DEFOCUS].to_numpy(np.float64)[rows] / 1e4
    found = matcher.match(images.gather(rows), template, defocus).rotations
    true = relion_angles_to_matrices(
        table.loc[table.index[rows], list(ANGLES)].to_numpy(np.float64)
    )
    every = []
    for c, name in enumerate(seen):
        mine = template == c
        group = groups.get(name, np.eye(3)[None])
        copies = np.einsum("nij,kjl->nkil", true[mine], group)
        errors = geodesic_deg(found[mine][:, None], copies).min(axis=1)
        every.append(errors)
        print(
            f"{name}: {mine.sum()} val particles, median error {np.median(errors):.1f} deg "
            f"(point group of {len(group)}), within 20 deg {np.mean(errors <= 20):.2f}"
        )
    errors = np.concatenate(every)
    print(
        f"all: median {np.median(errors):.1f} deg, within 20 deg {np.mean(errors <= 20):.2f}; "
        f"wedge {tilt}, CTF {'on' if microscope else 'off'}, {time.perf_counter() - started:.0f} s"
    )
    return 0


def _provenance_config(results: Path) -> dict:
    """The study's config as its run recorded it (provenance.json)."""
    path = results / "provenance.json"
    if not path.is_file():
        raise InputError(f"{path}: not found; run the study first")
    return json.loads(path.read_text())["config"]


def _read_map(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: the class's noise-free map is missing")
    with mrcfile.open(path, permissive=True) as handle:
        return np.asarray(handle.data, dtype=np.float32)


if __name__ == "__main__":
    sys.exit(main())
