"""Benchmark of the affinity stage on the ten bundled SHREC proteins (resources/pdb).

Figures:
- ``soap_affinity_seconds_shrec10``: wall seconds from the PDB files to the final SOAP prior
  (parse C-alpha atoms, default SoapConfig, spread + projection); median of repeats. Goal <= 10 s.
- ``soap_map_cc_spearman_shrec10``: Spearman of that prior against the map cross-correlation
  prior built from the project's own density maps (default DensityConfig), as the pipeline
  reports it. Goal >= 0.6.
- ``map_cc_affinity_seconds_shrec10``: seconds for the map cross-correlation (500 rotations;
  100 with ``quick``, which also times one SOAP run instead of the median of five).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from cryoavae.affinity import (
    AffinityConfig,
    build_affinity,
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


def _soap_prior(files: list[Path], config: AffinityConfig) -> np.ndarray:
    atoms = [load_atoms(f, soap_selection(config.soap)) for f in files]
    return build_affinity(soap_similarity(atoms, config.soap))[0]


def soap_affinity_seconds_shrec10(quick: bool) -> list[dict]:
    files, config = _pdb_files(), AffinityConfig()
    _soap_prior(files[-1:], config)  # warm-up: imports dscribe and ase
    seconds = []
    for _ in range(1 if quick else 5):
        start = time.perf_counter()
        _soap_prior(files, config)
        seconds.append(time.perf_counter() - start)
    return [
        {"name": "soap_affinity_seconds_shrec10", "value": statistics.median(seconds), "unit": "s"}
    ]


def soap_map_cc_spearman_shrec10(quick: bool) -> list[dict]:
    from cryoavae.density import DensityConfig, atoms_to_density

    files, config = _pdb_files(), AffinityConfig()
    soap_prior = _soap_prior(files, config)
    maps = np.stack(
        [atoms_to_density(load_atoms(f, AtomSelection()), DensityConfig()) for f in files]
    )
    rotations = 100 if quick else config.map_cc_rotations
    start = time.perf_counter()
    raw = map_cc_similarity(maps, rotations, seed=0)
    seconds = time.perf_counter() - start
    rho = spearman_agreement(soap_prior, build_affinity(raw)[0])
    return [
        {"name": "soap_map_cc_spearman_shrec10", "value": rho, "unit": "spearman"},
        {"name": "map_cc_affinity_seconds_shrec10", "value": seconds, "unit": "s"},
    ]


def run(quick: bool) -> list[dict]:
    return soap_affinity_seconds_shrec10(quick) + soap_map_cc_spearman_shrec10(quick)
