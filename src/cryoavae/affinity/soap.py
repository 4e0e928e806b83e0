"""SOAP descriptors of the structures (dscribe on ase atoms) and their cosine similarity."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..schema import section_dataclass
from ..structures import AtomArrays, AtomSelection

SECTION = "affinity.soap"

# SOAP cost grows with the number of centres (x neighbours within r_cut). Above this many centres
# per structure they are subsampled evenly along the file's atom order (deterministic, spread over
# every chain); all atoms still form the environment. Measured on the ten SHREC proteins at the
# default scale: 100, 300 or all centres give the same agreement with the map-CC prior
# (Spearman 0.858-0.862), while the cost stays bounded for a ribosome (~1e4 C-alpha: ~1 s).
MAX_SOAP_CENTERS = 300


class SoapConfig(section_dataclass(SECTION)):
    """Averaged-SOAP settings (dscribe), at the scale where SOAP sees shape rather than chemistry.
    Field names are the YAML keys of ``affinity.soap``; defaults and bounds from the schema.

    All-atom SOAP at chemical cutoffs (5 Å) rates every pair of proteins 0.999+ alike (Spearman
    0.03 against a map cross-correlation reference). On C-alpha pseudo-atoms with a cutoff of the
    order of a protein's radius it tracks shape. Measured on the ten SHREC proteins: Spearman of
    the final SOAP prior against the map cross-correlation prior (10 Å maps; the same to 0.01
    with the project's own density maps and with published reference maps):

    ====================  ==========  ============
    r_cut / sigma (Å)     raw cosine  standardised
    ====================  ==========  ============
    30 / 6                0.68        0.40
    40 / 8                0.72        0.53
    50 / 10               0.77        0.82
    60 / 10 (default)     0.77        0.86
    70-80 / 10-12         0.79        0.80-0.84
    ====================  ==========  ============

    (n_max 6, l_max 6; n_max 8 or l_max 4 move these by a few hundredths.) With the centres
    subsampled (MAX_SOAP_CENTERS) the cost hardly depends on r_cut: ~2 s for the ten proteins
    on a 2-core machine (benchmarks/bench_affinity.py), against a 10 s goal.

    ``standardize``: z-score each descriptor feature across the structures before the cosine, so
    the features that differ between structures count rather than what all proteins share. The
    prior then depends on the whole set of classes (still permutation-equivariant); with two
    classes it is always -1. Below ~50 Å it hurts (the table), so switch it off there.
    """


def soap_selection(config: SoapConfig, base: AtomSelection | None = None) -> AtomSelection:
    """The atom selection to load structures with for :func:`soap_similarity`."""
    base = base if base is not None else AtomSelection()
    return AtomSelection(
        atoms=config.atoms,
        keep_waters=base.keep_waters,
        keep_ions=base.keep_ions,
        assembly=base.assembly,
        chains=base.chains,
    )


def _soap_centres(n_atoms: int) -> np.ndarray:
    """Indices of the SOAP centres: all atoms, or MAX_SOAP_CENTERS spread evenly over them."""
    if n_atoms <= MAX_SOAP_CENTERS:
        return np.arange(n_atoms)
    return np.unique(np.linspace(0, n_atoms - 1, MAX_SOAP_CENTERS).round().astype(np.int64))


def soap_descriptors(structures: Sequence[AtomArrays], config: SoapConfig) -> np.ndarray:
    """Averaged SOAP power spectrum per structure: (n_structures, n_features) float64.

    With ``atoms="calpha"`` every pseudo-atom is one species; otherwise the species are the union
    of elements over all structures, so the feature vectors are comparable.
    """
    from ase import Atoms
    from dscribe.descriptors import SOAP

    if not structures:
        raise InputError("affinity: no structures given")
    for i, s in enumerate(structures):
        if len(s) == 0:
            raise InputError(f"affinity: structure {i} has no atoms")
        if config.atoms == "calpha" and np.any(s.atomic_numbers != 6):
            others = sorted(set(s.elements.tolist()) - {"C"})
            raise InputError(
                f"affinity.soap.atoms is 'calpha' but structure {i} holds {', '.join(others)} "
                "atoms: load it with soap_selection(config) (atoms='calpha')"
            )
    if config.atoms == "calpha":
        species = ["C"]
    else:
        species = sorted({e for s in structures for e in s.elements.tolist()})

    # dscribe orthonormalises its GTO radial basis when the descriptor is built; with one species
    # and a cutoff many times sigma that overlap matrix is ill-conditioned and scipy warns. The
    # basis is still usable (the priors change smoothly across r_cut and sigma: see SoapConfig),
    # so the warning is silenced here, and only here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ill-conditioned.*")
        soap = SOAP(
            species=species,
            r_cut=config.r_cut_angstrom,
            n_max=config.n_max,
            l_max=config.l_max,
            sigma=config.sigma_angstrom,
            periodic=False,
            average="off",
        )
        rows = []
        for s in structures:
            numbers = np.full(len(s), 6) if config.atoms == "calpha" else s.atomic_numbers
            system = Atoms(numbers=numbers, positions=s.positions)
            centres = _soap_centres(len(s))
            per_centre = soap.create(system, centers=centres.tolist())  # (n_centres, n_features)
            rows.append(
                np.asarray(per_centre, dtype=np.float64).reshape(-1, per_centre.shape[-1]).mean(0)
            )
    return np.stack(rows)


def _cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of x (n, f); a zero row is alike only to itself."""
    norms = np.linalg.norm(x, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    unit = x / safe[:, None]
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    cos = (cos + cos.T) / 2
    np.fill_diagonal(cos, 1.0)
    return cos


def soap_similarity(structures: Sequence[AtomArrays], config: SoapConfig) -> np.ndarray:
    """Raw cosine similarity (n, n) of the structures' averaged SOAP descriptors.

    With ``config.standardize`` the features are z-scored across the structures first (features
    constant across all structures are dropped). The result depends on the whole set then, but
    stays permutation-equivariant.
    """
    x = soap_descriptors(structures, config)
    if config.standardize:
        x = x - x.mean(axis=0)
        std = x.std(axis=0)
        keep = std > 1e-12 * max(float(np.abs(x).max()), 1e-300)
        x = x[:, keep] / std[keep]
    return _cosine_matrix(x)
