"""Where the templates come from in latent space: the centres each template is rendered from,
and the centres particles are assigned to them by (:mod:`cryoavae.orientation.templates`)."""

from __future__ import annotations

import numpy as np

__all__ = ["class_centres", "directions", "template_centres"]


def template_centres(
    fit_mu: np.ndarray, n_templates: int, metric: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means centres ``(k, latent_dims)`` of ``fit_mu`` (the training particles), to
    render, and the same centres in the space the clustering saw, to assign particles by. With
    ``cosine`` the clustering sees only directions, so a class whose ``|mu|`` is many times
    another's is neither split along its length nor a merger of the small ones near the origin;
    each centre to render is then the mean ``mu`` of its cluster."""
    from sklearn.cluster import KMeans  # here: matching and embedding jobs need no k-means

    n_templates = max(1, min(n_templates, len(fit_mu)))
    points = fit_mu if metric != "cosine" else directions(fit_mu)
    kmeans = KMeans(n_clusters=n_templates, n_init=4, random_state=seed).fit(points)
    if metric != "cosine":
        return kmeans.cluster_centers_, kmeans.cluster_centers_
    labels = kmeans.labels_
    totals = np.zeros((n_templates, fit_mu.shape[1]))
    np.add.at(totals, labels, fit_mu)
    counts = np.bincount(labels, minlength=n_templates)[:, None]
    return totals / np.maximum(counts, 1), kmeans.cluster_centers_


def class_centres(
    fit_mu: np.ndarray, labels: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """One template per class of ``labels`` (sorted): each class's mean ``mu`` to render, and
    the centre particles are assigned by, in the space ``metric`` compares (``cosine``: the mean
    of the class's directions). A class's template is then its own particles' shape: k-means
    centres need not follow the classes, and a particle matched against a template that mixes
    two classes gets neither's orientation."""
    labels = np.asarray(labels)
    classes, index = np.unique(labels, return_inverse=True)
    points = fit_mu if metric != "cosine" else directions(fit_mu)
    counts = np.bincount(index, minlength=len(classes))[:, None]
    render = np.zeros((len(classes), fit_mu.shape[1]))
    space = np.zeros((len(classes), fit_mu.shape[1]))
    np.add.at(render, index, fit_mu)
    np.add.at(space, index, points)
    return render / counts, space / counts


def directions(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
