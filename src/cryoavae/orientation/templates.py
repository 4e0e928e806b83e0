"""The orientation embedding reports when ``orientation.method`` is ``template_matching``.

The search itself is :mod:`cryoavae.orientation.matcher`; this module chooses its templates. A
template is the decoder's canonical rendering of a k-means centre of the training particles'
``mu`` (seeded; ``centre_metric: cosine`` clusters their directions), and each particle (train,
val or unseen) is matched against its nearest centre's template: the labels are never read, so a
plain beta-VAE gets the same treatment.

The decoder gives what subtomogram averaging finds hardest, a reference of each shape without
knowing any orientation; it is not exact (a blurred rendering confuses the small, nearly round
proteins). With ``reference_iterations`` the references are then refined as averaging refines
them: each template is replaced by the missing-wedge weighted average of its particles turned
back by their matched orientations (:func:`cryoavae.orientation.averaging.class_average`), and every
particle is matched again. With ``assignment: best_match`` the k-means centres only seed the
templates: each particle is searched against all of them and joins the one that fits it best, as
multi-reference alignment classifies particles, and the averages follow the new membership.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

from cryoavae.core.schema import section_dataclass
from cryoavae.orientation.averaging import centre_on_mass, class_average
from cryoavae.orientation.matcher import CtfModel, Matches, TemplateMatcher

__all__ = [
    "OrientationConfig",
    "match_with_references",
    "matched_orientations",
    "template_centres",
]

log = logging.getLogger(__name__)

MATCH_BATCH = 1024  # particles read and matched at once


class OrientationConfig(
    section_dataclass("orientation", extra=[("wedge_tilt_max_deg", float, None)])
):
    """The ``orientation`` section: ``method`` (``encoder`` or ``template_matching``),
    ``templates`` (k-means centres; 0 = one per seen class), ``grid_step_deg``,
    ``refinement_levels``, ``reference_iterations``, ``assignment``, ``centre_metric`` and
    ``ctf`` (see the schema); and the particles' missing wedge ``wedge_tilt_max_deg`` (the study's
    ``missing_wedge``, None for none), which templates are matched and averaged through."""


def matched_orientations(
    model,
    mu: np.ndarray,
    train_rows: np.ndarray,
    n_templates: int,
    images,
    config: OrientationConfig,
    seed: int,
    defocus_um: np.ndarray | None = None,
    ctf: CtfModel | None = None,
    fit_mu: np.ndarray | None = None,
) -> Matches:
    """Rotations ``(n, 3, 3)`` (RELION's ``A`` in the model's canonical frame), shifts and the
    template each particle was matched against; ``images`` gives the ``n`` rows of ``mu``.

    The template centres are fitted on ``mu[train_rows]``, or on ``fit_mu`` when given: a new
    particle set is matched against the templates of the study's own training particles."""
    started = time.perf_counter()
    fit = mu[train_rows] if fit_mu is None else fit_mu
    centres, template = template_centres(fit, mu, n_templates, config.centre_metric, seed)
    n_templates = len(centres)
    with torch.inference_mode():
        device = next(model.parameters()).device
        centres = torch.from_numpy(centres.astype(np.float32)).to(device)
        templates = model.decode(centres)[:, 0].float().cpu().numpy()  # identity pose
    if config.max_shift_angstrom > 0:  # shifts are then found relative to each centre of mass
        templates = centre_on_mass(templates)
    found = match_with_references(templates, template, images, config, defocus_um, ctf)
    log.info(
        "template matching (%s): %d particles against %d templates, %d reference iterations: "
        "%.1f s",
        config.assignment,
        len(mu),
        n_templates,
        config.reference_iterations,
        time.perf_counter() - started,
    )
    return found


def template_centres(
    fit_mu: np.ndarray, mu: np.ndarray, n_templates: int, metric: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means centres ``(k, latent_dims)`` of ``fit_mu`` (the training particles) and the
    nearest centre ``(n,)`` of each row of ``mu``. With ``cosine`` the clustering sees only
    directions, so a class whose ``|mu|`` is many times another's is neither split along its
    length nor a merger of the small ones near the origin; each centre is then the mean ``mu`` of
    its cluster."""
    n_templates = max(1, min(n_templates, len(fit_mu)))

    def directions(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    fit_points, points = (
        (fit_mu, mu) if metric != "cosine" else (directions(fit_mu), directions(mu))
    )
    kmeans = KMeans(n_clusters=n_templates, n_init=4, random_state=seed).fit(fit_points)
    template = kmeans.predict(points).astype(np.int64)
    if metric != "cosine":
        return kmeans.cluster_centers_, template
    labels = kmeans.labels_
    totals = np.zeros((n_templates, mu.shape[1]))
    np.add.at(totals, labels, fit_mu)
    counts = np.bincount(labels, minlength=n_templates)[:, None]
    return totals / np.maximum(counts, 1), template


def match_with_references(
    templates: np.ndarray,
    template_index: np.ndarray,
    images,
    config: OrientationConfig,
    defocus_um: np.ndarray | None = None,
    ctf: CtfModel | None = None,
) -> Matches:
    """Each of the ``n`` particles of ``images`` matched against ``templates[template_index]``
    (with ``config.assignment: best_match``, against whichever template fits it best), then
    ``config.reference_iterations`` times against the averages of the particles matched to each
    template (turned and moved back by what was found). Matching and averaging see the particles
    through their missing wedge, ``config.wedge_tilt_max_deg``; shifts up to
    ``config.max_shift_angstrom`` are searched."""
    templates = np.array(templates, dtype=np.float32)  # a copy: the averages replace it
    args = (images, config, defocus_um, ctf)
    searched = config.max_shift_angstrom > 0  # then every reference is kept centred on its mass
    found = _match_all(templates, np.array(template_index, dtype=np.int64), *args)
    for _ in range(config.reference_iterations):
        for c in np.unique(found.templates):  # a template no particle chose stays as it was
            rows = np.flatnonzero(found.templates == c)
            average = class_average(
                images,
                rows,
                found.rotations[rows],
                config.wedge_tilt_max_deg,
                found.shifts_px[rows],
            )
            templates[c] = centre_on_mass(average[None])[0] if searched else average
        found = _match_all(templates, found.templates, *args)
    return found


def _match_all(templates, template, images, config, defocus_um, ctf) -> Matches:
    """Every particle matched against its template (or, with ``best_match``, the best one), a
    batch of images at a time."""
    max_shift_px = 0.0
    if config.max_shift_angstrom > 0:
        max_shift_px = config.max_shift_angstrom / images.voxel_size_angstrom
    matcher = TemplateMatcher(
        templates,
        config.wedge_tilt_max_deg,
        ctf if config.ctf else None,
        config.grid_step_deg,
        config.refinement_levels,
        max_shift_px=max_shift_px,
    )
    batches, n, started = [], len(template), time.perf_counter()
    for start in range(0, n, MATCH_BATCH):
        rows = np.arange(start, min(n, start + MATCH_BATCH))
        focus = None if defocus_um is None else defocus_um[rows]
        if config.assignment == "best_match":
            batches.append(matcher.match_any(images.gather(rows), focus))
        else:
            batches.append(matcher.match(images.gather(rows), template[rows], focus))
        _log_progress(rows[-1] + 1, n, time.perf_counter() - started)
    return Matches(*(np.concatenate([getattr(b, f) for b in batches]) for f in Matches.FIELDS))


def _log_progress(done: int, n: int, seconds: float) -> None:
    """One line per batch: how far matching is, its rate and the time it still needs."""
    rate = done / max(seconds, 1e-9)
    log.info("matched %d of %d particles (%.1f /s, %.0f s to go)", done, n, rate, (n - done) / rate)
