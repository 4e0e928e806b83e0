"""SOAP descriptors of the structures (dscribe on ase atoms) and how alike they are."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from cryoavae.affinity.beads import bead_model
from cryoavae.affinity.kernels import (
    amplitude_features,
    average_similarity,
    rematch_similarity,
    weight_degrees,
)
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass
from cryoavae.structures import AtomArrays, AtomSelection

SECTION = "affinity.soap"

# With ``centres: atoms`` SOAP cost grows with the number of centres (x neighbours within r_cut).
# Above this many centres per structure they are subsampled evenly along the file's atom order
# (deterministic, spread over every chain); all atoms still form the environment. Measured on
# the ten SHREC proteins with the averaged C-alpha SOAP of r_cut 60 Å: 100, 300 or all centres
# give the same agreement with the map-CC prior (Spearman 0.858-0.862).
MAX_SOAP_CENTERS = 300


class SoapConfig(section_dataclass(SECTION)):
    """SOAP settings (dscribe): where the environments are centred, at which scale, how they are
    compared and how the similarities are calibrated. Field names are the YAML keys of
    ``affinity.soap``; defaults and bounds from the schema. Measurements: docs/science.md and
    ``python benchmarks/bench_affinity.py --variants``.

    The default sees a protein whole: one SOAP centre at its centroid, every C-alpha in its
    environment (``r_cut_angstrom: null``), C-alphas smeared into a 25 Å envelope, compared by
    the amplitude of each radial function and degree (:func:`kernels.amplitude_features`) with
    the degrees l >= 1 weighted twice (``angular_weight``: otherwise the radial profile, i.e.
    size, dominates and the large complexes come out too alike for the model to tell apart),
    the cosines mapped onto [-1, 1] by the ``power`` calibration. On the ten SHREC'21 proteins
    its prior has Spearman 0.95 with the map cross-correlation prior, all 10 nearest neighbours
    in common, in under a second. The cosine of the SOAP power spectrum averaged over up to 300
    C-alpha centres at r_cut 60 Å (``centres: atoms``, ``features: power``, ``standardize:
    true``, ``calibration: linear``, ``angular_weight: 1``, r_cut 60, n_max 6, l_max 6, sigma
    10) gives 0.86, with the large complexes nearly collinear; local environments (``beads`` or
    ``atoms`` at 20-80 Å, ``average`` or ``rematch``) give 0.60-0.82: at a protein's scale,
    local packing says little about the envelope that a density map shows.

    ``standardize``: z-score each feature of the mean descriptors across the structures before
    the cosine (``kernel: average`` only), so the features that differ between structures count;
    the prior then depends on the whole set of classes (still permutation-equivariant).
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


def _check(structures: Sequence[AtomArrays], config: SoapConfig) -> None:
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
    if config.standardize and config.kernel != "average":
        raise InputError(
            f"affinity.soap.standardize needs kernel: average (kernel is {config.kernel!r})"
        )


def _systems(structures: Sequence[AtomArrays], config: SoapConfig) -> list[tuple]:
    """Per structure: (atomic numbers, positions) of the environment and the centre positions.

    centroid: the atoms, one centre at their mean; beads: the bead model is both environment and
    centres (:func:`beads.bead_model`); atoms: the atoms, up to MAX_SOAP_CENTERS of them centres.
    """
    systems = []
    for s in structures:
        numbers = np.full(len(s), 6) if config.atoms == "calpha" else s.atomic_numbers
        if config.centres == "centroid":
            systems.append((numbers, s.positions, s.positions.mean(axis=0, keepdims=True)))
        elif config.centres == "beads":
            beads = bead_model(s.positions, config.atoms_per_bead)
            systems.append((np.full(len(beads), 6), beads, beads))
        else:
            systems.append((numbers, s.positions, s.positions[_soap_centres(len(s))]))
    return systems


def whole_structure_cutoff(systems: Sequence[tuple], sigma_angstrom: float) -> float:
    """The cutoff (Å) at which every centre sees all of its structure, the same for all: the
    largest centre-to-atom distance bound (radius about the centroid plus the centre's distance
    from it) plus 2 sigma, so the Gaussians of the outermost atoms are inside too."""
    reach = 0.0
    for _, positions, centres in systems:
        centroid = positions.mean(axis=0)
        radius = np.sqrt(((positions - centroid) ** 2).sum(axis=1).max())
        offset = np.sqrt(((centres - centroid) ** 2).sum(axis=1).max())
        reach = max(reach, float(radius + offset))
    return reach + 2.0 * sigma_angstrom


def soap_environments(structures: Sequence[AtomArrays], config: SoapConfig) -> list[np.ndarray]:
    """SOAP vectors per centre, one (n_centres_i, n_features) float64 array per structure.

    With ``atoms="calpha"`` every pseudo-atom is one species; otherwise the species are the union
    of elements over all structures, so the vectors are comparable. ``features: amplitude`` needs
    one species (C-alphas or beads).
    """
    from ase import Atoms
    from dscribe.descriptors import SOAP

    _check(structures, config)
    systems = _systems(structures, config)
    one_species = config.atoms == "calpha" or config.centres == "beads"
    if config.features == "amplitude" and not one_species:
        raise InputError(
            "affinity.soap.features: amplitude needs one species (atoms: calpha, or centres: "
            "beads); use features: power with atoms: heavy"
        )
    if one_species:
        species = ["C"]
    else:
        species = sorted({e for s in structures for e in s.elements.tolist()})
    r_cut = config.r_cut_angstrom
    if r_cut is None:
        r_cut = whole_structure_cutoff(systems, config.sigma_angstrom)

    # dscribe orthonormalises its GTO radial basis when the descriptor is built; with one species
    # and a cutoff many times sigma that overlap matrix is ill-conditioned and scipy warns. The
    # basis is still usable (the priors change smoothly across r_cut and sigma: see SoapConfig),
    # so the warning is silenced here, and only here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ill-conditioned.*")
        soap = SOAP(
            species=species,
            r_cut=float(r_cut),
            n_max=config.n_max,
            l_max=config.l_max,
            sigma=config.sigma_angstrom,
            periodic=False,
            average="off",
        )
        out = []
        for numbers, positions, centres in systems:
            system = Atoms(numbers=numbers, positions=positions)
            per_centre = soap.create(system, centers=centres.tolist())  # (n_centres, n_features)
            per_centre = np.asarray(per_centre, dtype=np.float64).reshape(len(centres), -1)
            if config.features == "amplitude":
                per_centre = amplitude_features(per_centre, config.n_max, config.l_max)
            if config.angular_weight != 1.0:
                squared = config.features == "power"
                per_centre = weight_degrees(
                    per_centre, config.l_max, config.angular_weight, squared
                )
            out.append(per_centre)
    return out


def soap_descriptors(structures: Sequence[AtomArrays], config: SoapConfig) -> np.ndarray:
    """Each structure's SOAP vector averaged over its centres: (n_structures, n_features)."""
    return np.stack([e.mean(axis=0) for e in soap_environments(structures, config)])


def soap_similarity(structures: Sequence[AtomArrays], config: SoapConfig) -> np.ndarray:
    """Raw similarity (n, n) of the structures' SOAP environments, 1 on the diagonal.

    ``kernel: average``: cosine of the mean vectors (z-scored first with ``standardize``);
    ``rematch``: the REMatch kernel (:mod:`cryoavae.affinity.kernels`). With one centre
    (``centres: centroid``) both are the cosine of the two vectors. Permutation-equivariant;
    before calibration (:func:`calibrate.calibrate_similarity`).
    """
    environments = soap_environments(structures, config)
    if config.kernel == "rematch" and any(len(e) > 1 for e in environments):
        return rematch_similarity(environments, config.rematch_alpha)
    return average_similarity(environments, config.standardize)
