"""The latent space of a trained model: the latents table and the geometry read off it.

The latents table (``models/<variant>/latents.tsv``, written by :mod:`cryoavae.inference.embed`)
has one row per particle: ``image``, ``class_name``, ``class_number``, ``split`` (``train``/``val``/
``test``/``unseen``; :data:`APPLIED` for a new particle set the study never used), ``angle_rot``,
``angle_tilt``, ``angle_psi`` (RELION ZYZ, degrees), ``mu_0..mu_{k-1}`` and ``pose_0..pose_{p-1}``
(``p`` may be 0). Directions in it are compared by cosine, as the
affinity loss compares them, so class centroids are mean *unit* vectors. Evaluation, open-set
application and interpolation all read the latent space through this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.core.errors import InputError

__all__ = [
    "APPLIED",
    "INFERRED_ANGLES",
    "INFERRED_SHIFTS",
    "LATENT_COLUMNS",
    "MATCHED_CLASS",
    "ORIENTATION_FIT",
    "assign_nearest_class",
    "class_centroids",
    "class_cosine_matrix",
    "fit_column",
    "latent_columns",
    "matched_classes",
    "place_by_neighbours",
    "read_latents",
]

#: The split of a new particle set's rows (``apply.particle_sets``): not ``unseen``, which means
#: a class the study held out of training, and never a class member in the study's averages.
APPLIED = "applied"
#: Nearest fitted particles whose UMAP positions are averaged to place another one.
PLACEMENT_NEIGHBOURS = 5
# scikit-learn computes pairwise distances in chunks of this many MB (its default, 1 GB, made
# the evaluation of 10^4 particles peak at 2.3 GB; at 128 MB it peaks at 0.8 GB, as fast)
WORKING_MEMORY_MB = 128

#: Columns every latents table has besides ``mu_*`` and ``pose_*``.
LATENT_COLUMNS = ("class_name", "split", "angle_rot", "angle_tilt", "angle_psi")
#: The model's own orientation of each particle (3-D, when its decoder turns by the pose).
INFERRED_ANGLES = ("inferred_rot", "inferred_tilt", "inferred_psi")
# where each particle's centre sits relative to its box's centre (Å, x y z): found by the
# translation search, or said by an encoder that predicts it (model.translation_px)
INFERRED_SHIFTS = (
    "inferred_shift_x_angstrom",
    "inferred_shift_y_angstrom",
    "inferred_shift_z_angstrom",
)
#: With template matching: the fraction of each particle's measured power its template explains
#: at the matched orientation and shift (the squared normalised correlation, in [0, 1])
ORIENTATION_FIT = "orientation_fit"
#: With one template per class: the class whose template the particle was matched against. Its
#: own density chose it (among ``orientation.candidate_templates`` proposed by the encoder), so it
#: is the particle's class, and the class whose frame its orientation is in.
MATCHED_CLASS = "orientation_class"


def fit_column(latents: pd.DataFrame) -> np.ndarray | None:
    """Each row's fit to its matched template (:data:`ORIENTATION_FIT`), None unless every row
    has a finite one (no orientation step, or an encoder's orientation)."""
    if ORIENTATION_FIT not in latents.columns:
        return None
    fits = pd.to_numeric(latents[ORIENTATION_FIT], errors="coerce").to_numpy(np.float64)
    return fits if len(fits) and np.isfinite(fits).all() else None


def matched_classes(latents: pd.DataFrame) -> np.ndarray | None:
    """Each row's :data:`MATCHED_CLASS` (object array, None where it has none), or None when the
    table has no such column (no orientation step, or k-means templates that name no class)."""
    if MATCHED_CLASS not in latents.columns:
        return None
    column = latents[MATCHED_CLASS]
    named = column.notna().to_numpy() & (column.astype(str).str.len() > 0).to_numpy()
    return np.where(named, column.astype(str).to_numpy(dtype=object), None)


def read_latents(path: str | os.PathLike) -> pd.DataFrame:
    """A latents table (class names kept as strings), with a one-line error naming the file if
    it is missing, unreadable, lacks a column, or holds non-finite ``mu``/``pose`` values."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: latents table not found")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"class_name": str, MATCHED_CLASS: str})
    except Exception as exc:  # pandas raises several types for a malformed file
        raise InputError(f"{path}: not a readable latents table ({exc})") from None
    missing = [c for c in LATENT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: latents table lacks columns {missing}")
    try:
        columns = latent_columns(table, "mu") + latent_columns(table, "pose")
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if not columns or not columns[0].startswith("mu_"):
        raise InputError(f"{path}: latents table has no mu_0..mu_(k-1) columns")
    values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{path}: row {row + 1} has {columns[col]} that is not a finite number")
    return table


def latent_columns(latents: pd.DataFrame, prefix: str) -> list[str]:
    """Columns ``{prefix}_0, {prefix}_1, ...`` in index order (``mu_10`` after ``mu_9``)."""
    found = {}
    for column in latents.columns:
        head, _, index = str(column).rpartition("_")
        if head == prefix and index.isdigit():
            found[int(index)] = column
    if sorted(found) != list(range(len(found))):
        raise InputError(f"latents table: columns {prefix}_* are not numbered 0..n-1: {found}")
    return [found[i] for i in range(len(found))]


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row stays zero (it has no direction)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def class_cosine_matrix(mu: np.ndarray, names: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Mean pairwise cosine of mu between the particles of every two classes, ``(c, c)``.

    Equals the dot product of the classes' mean unit vectors; the diagonal includes self-pairs.
    A class with no particles gets NaN.
    """
    u = _unit(np.asarray(mu, dtype=np.float64))
    means = _class_means(u, np.asarray(names), classes)
    return means @ means.T


def class_centroids(mu: np.ndarray, names: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Each class's centroid direction ``(c, k)``: the normalised mean of its unit mu vectors."""
    u = _unit(np.asarray(mu, dtype=np.float64))
    return _unit(_class_means(u, np.asarray(names), classes))


def _class_means(x: np.ndarray, names: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    ids = pd.Index(list(classes)).get_indexer(names.astype(object)).astype(np.int64)  # -1: other
    keep = ids >= 0
    sums = np.zeros((len(classes), x.shape[1]))
    np.add.at(sums, ids[keep], x[keep])
    counts = np.bincount(ids[keep], minlength=len(classes)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def assign_nearest_class(
    mu: np.ndarray,
    centroids: np.ndarray,
    centroid_names: Sequence[str],
    matched: np.ndarray | None = None,
) -> pd.DataFrame:
    """Each particle's class: the one its orientation was matched in (``matched`` ``(n,)``, the
    latents' :data:`MATCHED_CLASS`, see :func:`matched_classes`) where it names one of
    ``centroid_names``, else the nearest by cosine to ``centroids`` ``(c, k)``, for particles
    ``mu`` ``(n, k)``.

    Returns columns ``nearest_seen`` (that class) and ``nearest_cosine`` (the particle's cosine
    to its centroid). How novel a particle is, is :mod:`cryoavae.inference.novelty`'s
    (1 - the largest cosine is its ``centroid_cosine``).
    """
    cos = _unit(np.asarray(mu, dtype=np.float64)) @ np.asarray(centroids).T  # (n, c)
    best = np.argmax(cos, axis=1)
    if matched is not None:
        index = pd.Index(list(centroid_names)).get_indexer(np.asarray(matched, dtype=object))
        best = np.where(index >= 0, index, best)
    return pd.DataFrame(
        {
            "nearest_seen": np.asarray(list(centroid_names), dtype=object)[best],
            "nearest_cosine": cos[np.arange(len(cos)), best],
        }
    )


def place_by_neighbours(
    fitted_mu: np.ndarray,
    fitted_xy: np.ndarray,
    mu: np.ndarray,
    k: int = PLACEMENT_NEIGHBOURS,
) -> np.ndarray:
    """Positions ``(m, 2)`` for particles ``mu`` ``(m, k)`` in a 2-D map of ``fitted_mu``
    ``(n, k)`` at ``fitted_xy`` ``(n, 2)``: the mean position of each one's ``k`` nearest
    fitted particles by cosine.

    This is how a particle joins a UMAP it was not fitted with: the study's UMAP keeps no model
    that could ``transform`` new data (its neighbour graph is handed in precomputed, so it has no
    search index), and the same rule already places the particles beyond
    ``evaluation.umap_max_points``, so a placed particle sits where the study's own would.
    """
    import sklearn  # here: the many readers of a latents table need not import scikit-learn
    from sklearn.neighbors import NearestNeighbors

    mu = np.asarray(mu)
    if len(mu) == 0 or len(fitted_mu) == 0:
        return np.full((len(mu), 2), np.nan)
    near = NearestNeighbors(n_neighbors=min(k, len(fitted_mu)), metric="cosine", algorithm="brute")
    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        _, index = near.fit(np.asarray(fitted_mu)).kneighbors(mu)  # (m, k)
    return np.asarray(fitted_xy, np.float64)[index].mean(axis=1)
