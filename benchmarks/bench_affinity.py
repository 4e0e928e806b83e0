"""Benchmark of the affinity stage on the ten bundled SHREC proteins (resources/pdb).

Figures:
- ``soap_affinity_seconds_shrec10``: wall seconds from the PDB files to the final SOAP prior
  (parse C-alpha atoms, default SoapConfig, calibration + projection); median of repeats. Goal
  <= 10 s.
- ``soap_map_cc_spearman_shrec10``: Spearman of that prior against the map cross-correlation
  prior built from the project's own density maps (default DensityConfig), on the same pairs as
  the pipeline reports it (``affinity_info.json``). Goal >= 0.9.
- ``map_cc_affinity_seconds_shrec10``: seconds for the map cross-correlation (500 rotations;
  100 with ``quick``, which also times one SOAP run instead of the median of five).

``python benchmarks/bench_affinity.py --variants`` prints the table of SOAP variants of
docs/science.md: Spearman with the map-CC prior, nearest neighbours in common, mean
absolute difference from it, seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np

from cryoavae.affinity import (
    AffinityConfig,
    SoapConfig,
    build_affinity,
    calibrate_similarity,
    map_cc_similarity,
    soap_selection,
    soap_similarity,
    spearman_agreement,
)
from cryoavae.structures import AtomSelection, load_atoms

PDB_DIR = Path(__file__).resolve().parents[1] / "resources" / "pdb"


def _pdb_files() -> list[Path]:
    files = sorted(PDB_DIR.glob("*.pdb.gz"))
    if len(files) != 10:
        raise RuntimeError(f"expected the 10 SHREC proteins in {PDB_DIR}, found {len(files)}")
    return files


def _prior(raw: np.ndarray, config: SoapConfig) -> np.ndarray:
    """The final prior from raw SOAP similarities, as compute_affinity builds it."""
    return build_affinity(calibrate_similarity(raw, config.calibration)[0], spread=False)[0]


def _soap_prior(files: list[Path], config: AffinityConfig) -> np.ndarray:
    atoms = [load_atoms(f, soap_selection(config.soap)) for f in files]
    return _prior(soap_similarity(atoms, config.soap), config.soap)


def soap_affinity_seconds_shrec10(quick: bool) -> list[dict]:
    files, config = _pdb_files(), AffinityConfig()
    _soap_prior(files[-2:], config)  # warm-up: imports dscribe and ase
    seconds = []
    for _ in range(1 if quick else 5):
        start = time.perf_counter()
        _soap_prior(files, config)
        seconds.append(time.perf_counter() - start)
    return [
        {"name": "soap_affinity_seconds_shrec10", "value": statistics.median(seconds), "unit": "s"}
    ]


def _map_cc_raw(files: list[Path], rotations: int) -> tuple[np.ndarray, float]:
    from cryoavae.structures.density import DensityConfig, atoms_to_density

    maps = np.stack(
        [atoms_to_density(load_atoms(f, AtomSelection()), DensityConfig()) for f in files]
    )
    start = time.perf_counter()
    raw = map_cc_similarity(maps, rotations, seed=0)
    return raw, time.perf_counter() - start


def soap_map_cc_spearman_shrec10(quick: bool) -> list[dict]:
    files, config = _pdb_files(), AffinityConfig()
    soap_prior = _soap_prior(files, config)
    raw, seconds = _map_cc_raw(files, 100 if quick else config.map_cc_rotations)
    rho = spearman_agreement(soap_prior, build_affinity(raw)[0])
    return [
        {"name": "soap_map_cc_spearman_shrec10", "value": rho, "unit": "spearman"},
        {"name": "map_cc_affinity_seconds_shrec10", "value": seconds, "unit": "s"},
    ]


def run(quick: bool) -> list[dict]:
    return soap_affinity_seconds_shrec10(quick) + soap_map_cc_spearman_shrec10(quick)


# --- the variants of docs/science.md -----------------------------------------------------------

OLD_DEFAULT = {
    "centres": "atoms",
    "features": "power",
    "standardize": True,
    "calibration": "linear",
    "r_cut_angstrom": 60.0,
    "n_max": 6,
    "l_max": 6,
    "sigma_angstrom": 10.0,
    "angular_weight": 1.0,
}
LOCAL = {"features": "power", "n_max": 6, "l_max": 6, "angular_weight": 1.0}
W1 = {"angular_weight": 1.0}
VARIANTS = {
    "previous default: averaged C-alpha SOAP, 60 A, standardised, linear": OLD_DEFAULT,
    "local, C-alpha centres, 20 A (sigma 4)": {
        **LOCAL,
        "centres": "atoms",
        "r_cut_angstrom": 20.0,
        "sigma_angstrom": 4.0,
    },
    "local, C-alpha centres, 40 A (sigma 8)": {
        **LOCAL,
        "centres": "atoms",
        "r_cut_angstrom": 40.0,
        "sigma_angstrom": 8.0,
    },
    "local, C-alpha centres, 80 A (sigma 10)": {
        **LOCAL,
        "centres": "atoms",
        "r_cut_angstrom": 80.0,
        "sigma_angstrom": 10.0,
    },
    **{
        f"local, beads of 8, {r:.0f} A (sigma {s:.0f}), {k}": {
            **LOCAL,
            "centres": "beads",
            "r_cut_angstrom": r,
            "sigma_angstrom": s,
            "kernel": k,
        }
        for r, s in ((20.0, 5.0), (40.0, 8.0), (80.0, 10.0))
        for k in ("average", "rematch")
    },
    "beads of 8, whole structure (sigma 25), rematch": {
        "centres": "beads",
        "kernel": "rematch",
        **W1,
    },
    "centroid, power spectrum, sigma 10": {"features": "power", "sigma_angstrom": 10.0, **W1},
    "centroid, amplitudes, sigma 10": {"sigma_angstrom": 10.0, **W1},
    "centroid, power spectrum, sigma 25": {"features": "power", **W1},
    "centroid, amplitudes, sigma 25, calibration linear": {"calibration": "linear", **W1},
    "centroid, amplitudes, sigma 25, calibration rank": {"calibration": "rank", **W1},
    "centroid, amplitudes, sigma 25, calibration power (first choice)": W1,
    "centroid, as above, angular weight 1.5": {"angular_weight": 1.5},
    "centroid, as above, angular weight 3": {"angular_weight": 3.0},
    "default: centroid, amplitudes, sigma 25, angular weight 2, calibration power": {},
}
# Two scales: the default's distances plus a weighted share of a local scale's, each divided by
# its median over the pairs so that both count on the same footing.
LOCAL_SCALE = {"centres": "atoms", "r_cut_angstrom": 20.0, "sigma_angstrom": 4.0, "n_max": 6}
MULTISCALE_WEIGHTS = (0.25, 0.5, 1.0)


def _two_scales(envelope: np.ndarray, local: np.ndarray, weight: float) -> np.ndarray:
    iu = np.triu_indices(len(envelope), k=1)
    d_env, d_loc = 1.0 - envelope, 1.0 - local
    m_env, m_loc = np.median(d_env[iu]), np.median(d_loc[iu])
    return 1.0 - (d_env + weight * d_loc * m_env / m_loc) / (1.0 + weight)


def variants_table() -> str:
    """Markdown table of the SOAP variants against the map-CC prior (500 rotations, seed 0)."""
    files = _pdb_files()
    atoms = [load_atoms(f, AtomSelection(atoms="calpha")) for f in files]
    raw_map_cc, _ = _map_cc_raw(files, AffinityConfig().map_cc_rotations)
    reference = build_affinity(raw_map_cc)[0]
    iu = np.triu_indices(len(files), k=1)
    off = 3 * np.eye(len(files))
    soap_similarity(atoms[:2], SoapConfig())  # warm-up: imports dscribe and ase

    def row(name: str, prior: np.ndarray, seconds: float) -> str:
        rho = spearman_agreement(prior, reference)
        same = int(((prior - off).argmax(1) == (reference - off).argmax(1)).sum())
        mae = float(np.abs(prior - reference)[iu].mean())
        return f"| {name} | {rho:.3f} | {same}/10 | {mae:.3f} | {seconds:.2f} |"

    lines = [
        "| SOAP variant | Spearman vs map CC | nearest in common | mean abs diff | s |",
        "|---|---|---|---|---|",
    ]
    raws = {}
    for name, settings in VARIANTS.items():
        config = dataclasses.replace(SoapConfig(), **settings)
        start = time.perf_counter()
        raws[name] = soap_similarity(atoms, config)
        prior = _prior(raws[name], config)
        lines.append(row(name, prior, time.perf_counter() - start))
    default = SoapConfig()
    start = time.perf_counter()
    local = soap_similarity(atoms, dataclasses.replace(default, **LOCAL_SCALE))
    seconds = time.perf_counter() - start
    envelope = raws["default: centroid, amplitudes, sigma 25, angular weight 2, calibration power"]
    lines.append(row("local C-alpha amplitudes, 20 A (sigma 4) alone", _prior(local, default), 0))
    for weight in MULTISCALE_WEIGHTS:
        prior = _prior(_two_scales(envelope, local, weight), default)
        lines.append(row(f"two scales: default + {weight} x local 20 A", prior, seconds))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", action="store_true", help="print the table of variants")
    args = parser.parse_args()
    if args.variants:
        print(variants_table())
    else:
        for figure in run(quick=False):
            print(figure)
