"""The affinity prior: a class x class matrix of how alike two structures are.

The affinity loss asks cos(mu_i, mu_j) to equal A[y_i, y_j], so the matrix handed to training must
be a cosine-similarity matrix: symmetric, unit diagonal, entries in [-1, 1], positive
semi-definite (PSD). Any raw similarity (SOAP, map cross-correlation, a user's CSV) goes through
:func:`build_affinity`, which spreads it (:func:`spread_similarity`) and projects it onto that set
(:func:`nearest_correlation_matrix`), recording how far it had to move.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation
from scipy.stats import spearmanr

from cryoavae.atomic import write_text_atomic
from cryoavae.errors import InputError
from cryoavae.structures import AtomArrays, AtomSelection

__all__ = [
    "AffinityConfig",
    "SoapConfig",
    "best_achievable_l1",
    "build_affinity",
    "compute_affinity",
    "map_cc_similarity",
    "nearest_correlation_matrix",
    "read_affinity_csv",
    "soap_selection",
    "soap_similarity",
    "spearman_agreement",
    "spread_similarity",
    "write_affinity_csv",
]

log = logging.getLogger(__name__)

SOURCES = ("soap", "map_cc", "csv")
SOAP_ATOMS = ("calpha", "heavy", "all")
# SOAP cost grows with the number of centres (x neighbours within r_cut). Above this many centres
# per structure they are subsampled evenly along the file's atom order (deterministic, spread over
# every chain); all atoms still form the environment. Measured on the ten SHREC proteins at the
# default scale: 100, 300 or all centres give the same agreement with the map-CC prior
# (Spearman 0.858-0.862), while the cost stays bounded for a ribosome (~1e4 C-alpha: ~1 s).
MAX_SOAP_CENTERS = 300
CSV_SYMMETRY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SoapConfig:
    """Averaged-SOAP settings (dscribe), at the scale where SOAP sees shape rather than chemistry.

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

    atoms: str = "calpha"
    r_cut_angstrom: float = 60.0
    n_max: int = 6
    l_max: int = 6
    sigma_angstrom: float = 10.0
    standardize: bool = True


@dataclass(frozen=True)
class AffinityConfig:
    """Which prior to build. ``source``: "soap", "map_cc" (normalised cross-correlation of the
    density maps maximised over ``map_cc_rotations`` random rotations) or "csv" (``csv_path``)."""

    source: str = "soap"
    soap: SoapConfig = field(default_factory=SoapConfig)
    map_cc_rotations: int = 500
    csv_path: str | None = None


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


def _validate_soap(config: SoapConfig) -> None:
    if config.atoms not in SOAP_ATOMS:
        raise InputError(
            f"affinity.soap.atoms: {config.atoms!r} is not one of {', '.join(SOAP_ATOMS)}"
        )
    checks = {
        "r_cut_angstrom": (config.r_cut_angstrom, config.r_cut_angstrom > 1.0, "> 1"),
        "sigma_angstrom": (config.sigma_angstrom, config.sigma_angstrom > 0.0, "> 0"),
        "n_max": (config.n_max, 1 <= config.n_max <= 20, "an integer in [1, 20]"),
        "l_max": (config.l_max, 0 <= config.l_max <= 20, "an integer in [0, 20]"),
    }
    for key, (value, ok, accepted) in checks.items():
        if not ok:
            raise InputError(f"affinity.soap.{key}: {value!r} is not {accepted}")


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

    _validate_soap(config)
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


def _centre_of_mass_normalised(maps: torch.Tensor) -> torch.Tensor:
    """Centre of mass of each map (positive part) in affine_grid coordinates, (n, 3) as (x, y, z).

    maps: (n, d, d, d) indexed [z, y, x]. affine_grid's normalised coordinate of voxel k along an
    axis of length d is (2k + 1)/d - 1 (align_corners=False).
    """
    n, d = maps.shape[0], maps.shape[-1]
    weights = maps.clamp(min=0)
    total = weights.sum(dim=(1, 2, 3))
    coords = (2 * torch.arange(d, dtype=maps.dtype) + 1) / d - 1  # (d,)
    com_z = (weights.sum(dim=(2, 3)) * coords).sum(1)
    com_y = (weights.sum(dim=(1, 3)) * coords).sum(1)
    com_x = (weights.sum(dim=(1, 2)) * coords).sum(1)
    com = torch.stack([com_x, com_y, com_z], dim=1) / total.clamp(min=1e-30)[:, None]
    return torch.where(total[:, None] > 0, com, torch.zeros(n, 3, dtype=maps.dtype))


def _unit_rows(flat: torch.Tensor) -> torch.Tensor:
    """Rows (..., v) made zero-mean and unit-norm, so a dot product is a Pearson correlation."""
    flat = flat - flat.mean(dim=-1, keepdim=True)
    return flat / flat.norm(dim=-1, keepdim=True).clamp(min=1e-30)


def _grid(rotations: torch.Tensor, d: int) -> torch.Tensor:
    """Sampling grid (r, d, d, d, 3) that rotates a cube of edge d about its centre.

    rotations: (r, 3, 3) acting on (x, y, z) in grid_sample's normalised coordinates (the same
    scale on every axis for a cube, so these are true rotations). Built directly rather than with
    affine_grid, which is ~2x slower on CPU for this.
    """
    c = (2 * torch.arange(d, dtype=rotations.dtype) + 1) / d - 1
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    base = torch.stack([x, y, z], dim=-1).reshape(-1, 3)  # (d^3, 3)
    return (base @ rotations.transpose(1, 2)).reshape(-1, d, d, d, 3)


def map_cc_similarity(maps: np.ndarray, n_rotations: int, seed: int) -> np.ndarray:
    """Normalised cross-correlation of density maps, maximised over rotations: (n, n).

    maps: (n, d, d, d) on one voxel grid. Each map is first resampled so its centre of mass
    (positive density) sits at the box centre, so translations do not count. For each ordered
    pair (i, j) the Pearson correlation of rotated map i with map j is maximised over the
    identity and ``n_rotations - 1`` uniform random rotations (from ``seed``); the result takes
    the larger of (i, j) and (j, i), so it is symmetric with a unit diagonal. Trilinear
    resampling, zero outside the box. All maps share each rotated grid (maps as channels of one
    grid_sample call), and memory stays below ~64 MB of samples per step.
    """
    maps_np = np.asarray(maps)
    if maps_np.ndim != 4 or len(set(maps_np.shape[1:])) != 1:
        raise InputError(f"affinity: maps must be (n, d, d, d); got shape {maps_np.shape}")
    if not np.all(np.isfinite(maps_np)):
        raise InputError("affinity: maps hold NaN or infinite values")
    if n_rotations < 1:
        raise InputError(f"affinity.map_cc_rotations: {n_rotations!r} is not an integer >= 1")
    vols = torch.as_tensor(maps_np, dtype=torch.float32)
    n, d = vols.shape[0], vols.shape[-1]
    rng = np.random.default_rng(seed)
    mats = np.eye(3)[None]
    if n_rotations > 1:
        mats = np.concatenate(
            [mats, Rotation.random(n_rotations - 1, random_state=rng).as_matrix()]
        )
    rotations = torch.as_tensor(mats, dtype=torch.float32)  # (r, 3, 3)

    with torch.no_grad():
        # Centre: sample each map at (identity grid + its centre of mass). (n, 1, d, d, d)
        shift = _centre_of_mass_normalised(vols)[:, None, None, None, :]
        identity = _grid(torch.eye(3)[None], d)
        centred = F.grid_sample(
            vols[:, None],
            identity + shift,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        reference = _unit_rows(centred.reshape(n, -1))  # (n, d^3)
        channels = centred[:, 0][None]  # (1, n, d, d, d): every map sampled on each grid at once
        best = torch.full((n, n), -1.0)
        chunk = max(1, 2**24 // (n * d**3))
        for start in range(0, len(rotations), chunk):
            r = rotations[start : start + chunk]
            grid = _grid(r, d).reshape(1, len(r) * d, d, d, 3)
            moved = F.grid_sample(
                channels, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )  # (1, n, r*d, d, d)
            moved = _unit_rows(moved.reshape(n, len(r), d**3))
            cc = torch.einsum("irv,jv->irj", moved, reference)  # (n, r, n)
            best = torch.maximum(best, cc.max(dim=1).values)
    cc = best.double().numpy()
    cc = np.maximum(cc, cc.T)
    np.fill_diagonal(cc, 1.0)
    return np.clip(cc, -1.0, 1.0)


def spread_similarity(raw: np.ndarray) -> np.ndarray:
    """Stretch raw similarities (n, n) linearly so the least similar pair gets -1.

    a_ij = 1 - 2 (1 - s_ij) / (1 - s_min), with s_min the smallest off-diagonal value. Reading
    1 - s as a squared distance (for unit vectors |u - v|^2 = 2 (1 - cos)), this rescales all
    distances by the largest one: identical structures stay at 1, the most different pair goes
    to -1, and the order of every pair is kept (so any rank statistic is unchanged). Averaged
    SOAP cosines of proteins all lie within a few hundredths of 1; without this, every class
    would be asked to sit at almost the same latent direction. The result is usually not PSD:
    :func:`build_affinity` projects it afterwards. A matrix with no spread (all off-diagonal
    values 1, or n = 1) is returned as all ones.
    """
    s = _check_square(raw, "raw similarity")
    n = s.shape[0]
    out = np.ones_like(s)
    if n < 2:
        return out
    off = ~np.eye(n, dtype=bool)
    s_min = float(s[off].min())
    if s_min >= 1.0 - 1e-15:
        return out
    out = 1.0 - 2.0 * (1.0 - s) / (1.0 - s_min)
    out = np.clip((out + out.T) / 2, -1.0, 1.0)
    np.fill_diagonal(out, 1.0)
    return out


def _check_square(m: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InputError(f"affinity: {what} must be a square matrix; got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InputError(f"affinity: {what} holds NaN or infinite values")
    return m


def _psd_part(m: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Symmetric m with eigenvalues below ``floor`` raised to it (nearest PSD in Frobenius)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.maximum(w, floor)) @ v.T


def nearest_correlation_matrix(
    m: np.ndarray, *, tol: float = 1e-10, max_iterations: int = 1000
) -> np.ndarray:
    """The nearest (Frobenius) symmetric PSD matrix with unit diagonal to ``m`` (n, n).

    Higham (2002), "Computing the nearest correlation matrix", alternating projections onto the
    PSD cone and the unit-diagonal set with Dykstra's correction. A last step clips eigenvalues at
    0 and rescales to a unit diagonal, so the result is exactly a correlation matrix (entries in
    [-1, 1]) even when the iteration stops early. A PSD unit-diagonal input comes back unchanged.
    """
    a = _check_square(m, "matrix")
    a = (a + a.T) / 2
    y = a.copy()
    np.fill_diagonal(y, 1.0)
    correction = np.zeros_like(a)
    for _ in range(max_iterations):
        r = y - correction
        x = _psd_part(r)
        correction = x - r
        y_next = x.copy()
        np.fill_diagonal(y_next, 1.0)
        change = np.linalg.norm(y_next - y) / max(np.linalg.norm(y), 1e-300)
        y = y_next
        if change < tol:
            break
    x = _psd_part(y)
    d = np.sqrt(np.clip(np.diag(x), 1e-300, None))
    x = x / d[:, None] / d[None, :]
    x = np.clip((x + x.T) / 2, -1.0, 1.0)
    np.fill_diagonal(x, 1.0)
    return x


def best_achievable_l1(a: np.ndarray) -> float:
    """Floor of the affinity loss for prior ``a``: mean |G - A| over off-diagonal class pairs.

    G is the nearest correlation matrix to A, i.e. the Gram matrix of the best unit latent
    directions (one per class, latent dimension >= n). It is exactly 0 for a valid (PSD) prior
    and an upper bound of the true L1 optimum otherwise (G is Frobenius-, not L1-, optimal). The
    loss of a trained model cannot go much below it whatever the weight on the affinity term.
    """
    m = _check_square(a, "affinity")
    n = m.shape[0]
    if n < 2:
        return 0.0
    g = nearest_correlation_matrix(m)
    off = ~np.eye(n, dtype=bool)
    return float(np.abs(g - m)[off].mean())


def _min_eigenvalue(m: np.ndarray) -> float:
    return float(np.linalg.eigvalsh((m + m.T) / 2).min())


def build_affinity(raw: np.ndarray, *, spread: bool = True) -> tuple[np.ndarray, dict]:
    """Turn raw similarities into the prior handed to training: spread, then project.

    Returns the (n, n) matrix (symmetric, unit diagonal, in [-1, 1], PSD) and a dict with
    ``min_eigenvalue_before``/``_after`` and ``best_l1_before``/``_after`` (see
    :func:`best_achievable_l1`); "before" is the spread matrix. ``spread=False`` keeps the values
    (a user's own matrix) and only projects.
    """
    m = _check_square(raw, "raw similarity")
    spread_m = spread_similarity(m) if spread else (m + m.T) / 2
    final = nearest_correlation_matrix(spread_m)
    info = {
        "min_eigenvalue_before": _min_eigenvalue(spread_m),
        "min_eigenvalue_after": _min_eigenvalue(final),
        "best_l1_before": best_achievable_l1(spread_m),
        "best_l1_after": best_achievable_l1(final),
    }
    return final, info


def spearman_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (n, n) matrices over their upper triangles (i < j).

    NaN when it is undefined (fewer than 2 pairs, or a constant triangle).
    """
    a = _check_square(a, "matrix")
    b = _check_square(b, "matrix")
    if a.shape != b.shape:
        raise InputError(f"affinity: cannot compare matrices of shapes {a.shape} and {b.shape}")
    iu = np.triu_indices(a.shape[0], k=1)
    x, y = a[iu], b[iu]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _parse_float(cell: str, path: Path, row: int) -> float:
    try:
        return float(cell)
    except ValueError:
        raise InputError(
            f"affinity.csv_path: {path} row {row}: {cell!r} is not a number (expected a header "
            "row of class names and a square matrix of numbers below)"
        ) from None


def read_affinity_csv(path: str | Path, class_names: Sequence[str]) -> np.ndarray:
    """Read a user's affinity matrix and return it (n, n) in the order of ``class_names``.

    Layout (the original Affinity-VAE one): a header row of class names, then the square matrix.
    A leading label column (as pandas writes it) is accepted if it repeats the header's names.
    Checks: square; numbers; symmetric within 1e-3; values in [-1, 1]; unit diagonal (a zero
    diagonal usually means a distance matrix); names equal to the study's classes as a set.

    Raises:
        InputError: one line naming the file and the first problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"affinity.csv_path: {path} does not exist or is not a file")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"affinity.csv_path: {path} is empty")
    header = [c.strip() for c in rows[0]]
    body = [[c.strip() for c in r] for r in rows[1:]]
    labels = None
    if header and header[0] == "" and all(len(r) == len(header) for r in body):
        header = header[1:]
        labels = [r[0] for r in body]
        body = [r[1:] for r in body]
    n = len(header)
    if len(body) != n or any(len(r) != n for r in body):
        widths = sorted({len(r) for r in body})
        raise InputError(
            f"affinity.csv_path: {path} is not square: header names {n} classes but there are "
            f"{len(body)} rows of {', '.join(map(str, widths)) or 0} values"
        )
    if labels is not None and labels != header:
        raise InputError(
            f"affinity.csv_path: {path}: row labels {labels} differ from the header {header}"
        )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise InputError(f"affinity.csv_path: {path}: class names repeated in header: {duplicates}")
    wanted = [str(c) for c in class_names]
    unknown = sorted(set(header) - set(wanted))
    missing = sorted(set(wanted) - set(header))
    if unknown or missing:
        raise InputError(
            f"affinity.csv_path: {path}: class names do not match the study: unknown {unknown}, "
            f"missing {missing} (study classes: {', '.join(wanted)})"
        )
    a = np.array([[_parse_float(c, path, i + 2) for c in r] for i, r in enumerate(body)])
    if not np.all(np.isfinite(a)):
        raise InputError(f"affinity.csv_path: {path} holds NaN or infinite values")
    bad = np.argwhere(np.abs(a - a.T) > CSV_SYMMETRY_TOLERANCE)
    if bad.size:
        i, j = bad[0]
        raise InputError(
            f"affinity.csv_path: {path} is not symmetric: {header[i]},{header[j]} = {a[i, j]} but "
            f"{header[j]},{header[i]} = {a[j, i]} (tolerance {CSV_SYMMETRY_TOLERANCE})"
        )
    outside = np.argwhere(np.abs(a) > 1.0 + 1e-9)
    if outside.size:
        i, j = outside[0]
        raise InputError(
            f"affinity.csv_path: {path}: value {a[i, j]} at {header[i]},{header[j]} is outside "
            "[-1, 1]"
        )
    diag = np.abs(np.diag(a) - 1.0) > CSV_SYMMETRY_TOLERANCE
    if diag.any():
        k = int(np.argmax(diag))
        raise InputError(
            f"affinity.csv_path: {path}: diagonal must be 1 (a similarity, not a distance); "
            f"{header[k]},{header[k]} = {a[k, k]}"
        )
    order = [header.index(c) for c in wanted]
    a = a[np.ix_(order, order)]
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return a


def write_affinity_csv(path: str | Path, class_names: Sequence[str], a: np.ndarray) -> None:
    """Write ``a`` (n, n) with a header row of class names (the original Affinity-VAE layout).

    Values use Python's shortest round-trip float repr, so reading gives the same matrix.
    """
    a = _check_square(a, "affinity")
    names = [str(c) for c in class_names]
    if len(names) != a.shape[0]:
        raise InputError(
            f"affinity: {len(names)} class names for a {a.shape[0]}x{a.shape[0]} matrix"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([[repr(float(v)) for v in row] for row in a])
    write_text_atomic(path, buffer.getvalue())


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
    ``source``; ``raw`` (n x n nested lists) the source's similarities before spreading; the
    :func:`build_affinity` keys; ``seconds`` for the chosen source; ``map_cc_raw``,
    ``map_cc_seconds``, ``spearman_vs_map_cc`` (final prior vs the map-CC prior built the same
    way) and ``spearman_raw_vs_map_cc``, each None without maps or when undefined (fewer than 3
    classes).
    """
    names = [str(c) for c in class_names]
    n = len(names)
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

    map_raw, map_seconds = None, None
    if maps is not None:
        start = time.perf_counter()
        map_raw = map_cc_similarity(maps, config.map_cc_rotations, seed)
        map_seconds = time.perf_counter() - start

    start = time.perf_counter()
    if config.source == "soap":
        raw = soap_similarity(atoms, config.soap)
        final, info = build_affinity(raw)
    elif config.source == "map_cc":
        raw = map_raw
        final, info = build_affinity(raw)
    else:
        raw = read_affinity_csv(config.csv_path, names)
        final, info = build_affinity(raw, spread=False)
    seconds = time.perf_counter() - start
    if config.source == "map_cc":
        seconds = map_seconds

    agreement = agreement_raw = None
    if map_raw is not None:
        reference = final if config.source == "map_cc" else build_affinity(map_raw)[0]
        rho = spearman_agreement(final, reference)
        rho_raw = spearman_agreement(raw, map_raw)
        agreement = None if np.isnan(rho) else rho
        agreement_raw = None if np.isnan(rho_raw) else rho_raw
    info = {
        "class_names": names,
        "source": config.source,
        "raw": raw.tolist(),
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
