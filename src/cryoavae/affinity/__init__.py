"""The affinity prior: a class x class matrix of how alike two structures are.

The affinity loss asks cos(mu_i, mu_j) to equal A[y_i, y_j], so the matrix handed to training must
be a cosine-similarity matrix: symmetric, unit diagonal, entries in [-1, 1], positive
semi-definite (PSD). Any raw similarity (SOAP, map cross-correlation, a user's CSV) goes through
:func:`build_affinity`, which spreads it (:func:`spread_similarity`; SOAP similarities are
calibrated instead, :func:`calibrate_similarity`) and projects it onto that set
(:func:`nearest_correlation_matrix`), recording how far it had to move.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from cryoavae.affinity.calibrate import calibrate_similarity
from cryoavae.affinity.io import read_affinity_csv, write_affinity_csv
from cryoavae.affinity.map_cc import map_cc_similarity
from cryoavae.affinity.matrix import (
    best_achievable_l1,
    build_affinity,
    nearest_correlation_matrix,
    spearman_agreement,
    spread_similarity,
)
from cryoavae.affinity.soap import (
    SoapConfig,
    soap_descriptors,
    soap_environments,
    soap_selection,
    soap_similarity,
)
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass
from cryoavae.structures import AtomArrays

__all__ = [
    "UNINFORMED",
    "AffinityConfig",
    "SoapConfig",
    "best_achievable_l1",
    "build_affinity",
    "calibrate_similarity",
    "compute_affinity",
    "map_cc_similarity",
    "nearest_correlation_matrix",
    "read_affinity_csv",
    "soap_descriptors",
    "soap_environments",
    "soap_selection",
    "soap_similarity",
    "spearman_agreement",
    "spread_similarity",
    "write_affinity_csv",
]

log = logging.getLogger(__name__)

SECTION = "affinity"
SOURCES = ("soap", "map_cc", "csv", "uniform", "none")  # and "glyph", for the character set
# Sources that know nothing of the classes: the identity, for classes known by name only.
UNINFORMED = ("uniform", "none")


class AffinityConfig(section_dataclass(SECTION, nested={"soap": SoapConfig})):
    """Which prior to build (the ``affinity`` section). ``source``: "soap", "map_cc"
    (normalised cross-correlation of the density maps maximised over ``map_cc_rotations`` random
    rotations), "csv" (``csv_path``), or the identity for classes known by name only: "uniform"
    (a prior that says each class is like itself alone) or "none" (a beta-VAE: training.gamma
    is 0, the identity is there only for evaluation to read); "glyph" belongs to the character
    set (:func:`cryoavae.sources.characters.glyph_affinity`)."""


def compute_affinity(
    class_names: Sequence[str],
    atoms: Sequence[AtomArrays],
    maps: np.ndarray | None,
    config: AffinityConfig,
    seed: int,
) -> tuple[np.ndarray, dict]:
    """Build the prior the config asks for, and measure it against the map cross-correlation.

    class_names: n names; atoms: n structures loaded with :func:`soap_selection` (used by
    "soap"); maps: (n, d, d, d) density maps of the same classes on one grid (used by "map_cc"
    and for the agreement; None skips the agreement). ``seed`` draws the map-CC rotations.

    Returns the final (n, n) matrix and an info dict of plain JSON types: ``class_names``;
    ``source``; ``raw`` (n x n nested lists) the source's similarities before spreading or
    calibration; ``calibration`` (soap: the :func:`calibrate_similarity` dict, else None); the
    :func:`build_affinity` keys ("before" is the spread or calibrated matrix); ``seconds`` for
    the chosen source; ``map_cc_raw``,
    ``map_cc_seconds``, ``spearman_vs_map_cc`` (final prior vs the map-CC prior built the same
    way) and ``spearman_raw_vs_map_cc``, each None without maps or when undefined (fewer than 3
    classes).
    """
    names = [str(c) for c in class_names]
    n = len(names)
    _check_sources(n, atoms, maps, config)

    map_raw, map_seconds = None, None
    if maps is not None and config.source not in UNINFORMED:  # no agreement for the identity
        start = time.perf_counter()
        map_raw = map_cc_similarity(maps, config.map_cc_rotations, seed)
        map_seconds = time.perf_counter() - start

    start = time.perf_counter()
    raw, final, info, calibration = _prior_from_source(names, atoms, map_raw, config)
    seconds = time.perf_counter() - start
    if config.source == "map_cc":
        seconds = map_seconds

    agreement, agreement_raw = _agreement_with_map_cc(final, raw, map_raw, config.source)
    info = {
        "class_names": names,
        "source": config.source,
        "raw": raw.tolist(),
        "calibration": calibration,
        **info,
        "seconds": seconds,
        "map_cc_raw": None if map_raw is None else map_raw.tolist(),
        "map_cc_seconds": map_seconds,
        "spearman_vs_map_cc": agreement,
        "spearman_raw_vs_map_cc": agreement_raw,
    }
    log.info(
        "affinity from %s for %d classes in %.2f s: min eigenvalue %.3g -> %.3g, best L1 %.3g -> "
        "%.3g, Spearman vs map-CC prior %s",
        config.source,
        n,
        seconds,
        info["min_eigenvalue_before"],
        info["min_eigenvalue_after"],
        info["best_l1_before"],
        info["best_l1_after"],
        "n/a" if agreement is None else f"{agreement:.3f}",
    )
    return final, info


def _check_sources(
    n: int, atoms: Sequence[AtomArrays], maps: np.ndarray | None, config: AffinityConfig
) -> None:
    """InputError before any work when the chosen source lacks what it is built from."""
    if config.source not in SOURCES:
        raise InputError(f"affinity.source: {config.source!r} is not one of {', '.join(SOURCES)}")
    if n == 0:
        raise InputError("affinity: no classes given")
    if config.source == "soap" and len(atoms) != n:
        raise InputError(f"affinity: {len(atoms)} structures for {n} classes")
    if maps is not None and len(maps) != n:
        raise InputError(f"affinity: {len(maps)} maps for {n} classes")
    if config.source == "map_cc" and maps is None:
        raise InputError("affinity.source is 'map_cc' but no density maps were given")
    if config.source == "csv" and not config.csv_path:
        raise InputError("affinity.source is 'csv' but affinity.csv_path is not set")


def _prior_from_source(
    names: list[str],
    atoms: Sequence[AtomArrays],
    map_raw: np.ndarray | None,
    config: AffinityConfig,
) -> tuple[np.ndarray, np.ndarray, dict, dict | None]:
    """The chosen source's raw similarities, the prior built from them, the
    :func:`build_affinity` info and the SOAP calibration (None for the other sources).

    SOAP similarities are calibrated rather than spread, and a user's CSV is taken as it is, so
    only the map cross-correlation is spread."""
    calibration = None
    if config.source in UNINFORMED:
        raw = _identity_prior(len(names), config.source)
        final, info = build_affinity(raw, spread=False)
    elif config.source == "soap":
        raw = soap_similarity(atoms, config.soap)
        calibrated, calibration = calibrate_similarity(raw, config.soap.calibration)
        final, info = build_affinity(calibrated, spread=False)
    elif config.source == "map_cc":
        raw = map_raw
        final, info = build_affinity(raw)
    else:
        raw = read_affinity_csv(config.csv_path, names)
        final, info = build_affinity(raw, spread=False)
    return raw, final, info, calibration


def _identity_prior(n: int, source: str) -> np.ndarray:
    """The (n, n) identity, with a warning where it is trained towards: it only asks every
    class to be unlike every other (orthogonal mean directions), which is no knowledge of how
    the classes relate; the point of an affinity prior is lost."""
    if source == "uniform":
        log.warning(
            "affinity.source uniform: the identity prior (each class similar only to itself) "
            "carries no knowledge of how the classes relate; the affinity term only pushes "
            "every pair of classes apart. Give a prior (affinity.source: csv, or structures "
            "with soap/map_cc) to shape the latent space by it"
        )
    else:
        log.info(
            "affinity.source none: no prior (a beta-VAE, training.gamma 0); the identity is "
            "written only so that evaluation has a matrix to read"
        )
    return np.eye(n)


def _agreement_with_map_cc(
    final: np.ndarray, raw: np.ndarray, map_raw: np.ndarray | None, source: str
) -> tuple[float | None, float | None]:
    """Spearman of the final prior against the map-CC prior built the same way, and of the raw
    similarities against the raw map CC; None without maps or where undefined, so the info dict
    stays plain JSON."""
    if map_raw is None:
        return None, None
    reference = final if source == "map_cc" else build_affinity(map_raw)[0]
    rho = spearman_agreement(final, reference)
    rho_raw = spearman_agreement(raw, map_raw)
    return (None if np.isnan(rho) else rho), (None if np.isnan(rho_raw) else rho_raw)
