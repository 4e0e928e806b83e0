"""A particle set matched against templates, a batch at a time: which batches, each particle's
candidate templates weighed, and the matches gathered back in the table's order. The search
itself is :class:`~cryoavae.orientation.matcher.TemplateMatcher`; which templates, and how they
are refined, :mod:`cryoavae.orientation.templates`."""

from __future__ import annotations

import logging

import numpy as np

from cryoavae.core.progress import Progress
from cryoavae.orientation.matcher import TemplateMatcher
from cryoavae.orientation.matches import Matches

__all__ = ["MATCH_BATCH", "match_all", "match_batches"]

log = logging.getLogger(__name__)

MATCH_BATCH = 256  # particles read and matched at once: 1,024 took fit_references to 1.8 GB


def match_all(
    templates,
    template,
    images,
    config,
    defocus_um,
    ctf,
    what="matching particles",
    guess=None,
    frame_offsets_px=None,
) -> Matches:
    """Every particle matched against its template (or, with ``best_match``, the best one), a
    batch of images at a time, its progress logged as ``what``; ``guess``: centre guesses in the
    frame the templates' ``frame_offsets_px`` refer to. ``template`` ``(n,)``, or ``(n, k)``
    candidates per particle: each searched over the global grid and the one that explains most
    of the particle refined (the scores are comparable: each is the particle's energy its
    template explains, with a free scale), as classification with adaptive oversampling refines
    only the likely classes."""
    max_shift_px = 0.0
    if config.max_shift_angstrom > 0:
        max_shift_px = config.max_shift_angstrom / images.voxel_size_angstrom
    matcher = TemplateMatcher(
        templates,
        config.wedge_tilt_max_deg,
        ctf if config.ctf else None,
        config.grid_step_deg,
        config.refinement_levels,
        low_pass_px=templates.shape[-1] / config.global_resolution_px,
        max_shift_px=max_shift_px,
        guess_offsets_px=frame_offsets_px,
        refinement=config.refinement,
    )
    candidates = np.asarray(template).reshape(len(template), -1)
    n, k = candidates.shape
    particle = np.repeat(np.arange(n), k)  # one pair per candidate, a particle's together
    pairs = (matcher, particle, candidates.ravel(), images, config, defocus_um, guess)
    if k == 1:
        with Progress(n, what, log) as progress:
            return _match_pairs(*pairs, progress)
    with Progress(n * k + n, what, log) as progress:  # every candidate searched, one refined
        found = _match_pairs(*pairs, progress, refine=False)
        scores = np.nan_to_num(found.scores.reshape(n, k), nan=-np.inf)  # NaN never wins
        best = found.take(np.arange(n) * k + scores.argmax(axis=1))
        return _refine(matcher, best, images, defocus_um, progress)


def _match_pairs(
    matcher, particle, template, images, config, defocus_um, guess, progress, refine=True
):
    """Particle ``particle[i]`` against ``template[i]`` (or the best, with ``best_match``) for
    every pair ``i``, in batches; each template's pairs together, so that its turned grid is
    sampled once for all its candidates (:func:`match_batches`). ``refine=False``: the global
    search only (:meth:`TemplateMatcher.match`)."""
    batches, plan = [], match_batches(template, config.assignment != "best_match")
    for pairs in plan:
        rows = particle[pairs]
        focus = None if defocus_um is None else defocus_um[rows]
        near = None if guess is None else guess[rows]
        volumes = images.gather(rows)
        if config.assignment == "best_match":
            batches.append(matcher.match_any(volumes, focus, near))
        else:
            batches.append(matcher.match(volumes, template[pairs], focus, near, refine))
        progress.advance(len(pairs))
    return _in_order(batches, plan)


def _refine(matcher, start: Matches, images, defocus_um, progress) -> Matches:
    """Each particle's global match ``start`` refined, in batches of a template's particles."""
    batches, plan = [], match_batches(start.templates, True)
    for rows in plan:
        focus = None if defocus_um is None else defocus_um[rows]
        batches.append(matcher.refine(images.gather(rows), start.take(rows), focus))
        progress.advance(len(rows))
    return _in_order(batches, plan)


def _in_order(batches: list[Matches], plan: list[np.ndarray]) -> Matches:
    """The batches' matches gathered back into the order of the rows they were planned from."""
    back = np.argsort(np.concatenate(plan))
    found = (np.concatenate([getattr(b, field) for b in batches]) for field in Matches.FIELDS)
    return Matches(*(values[back] for values in found))


def match_batches(template: np.ndarray, by_template: bool) -> list[np.ndarray]:
    """The rows ``(<= MATCH_BATCH,)`` matched at once, each batch in table order. With
    ``by_template`` each template's particles come together (sorted by template): the global
    search samples a template's turned grid once for all its particles, where batches in the
    table's order would each sample every template's grid again whenever the grids do not all
    fit the grid cache (``grids.GRID_CACHE_BYTES``: eight templates of 32^3 at
    ``global_resolution_px`` 3 do not)."""
    order = np.argsort(template, kind="stable") if by_template else np.arange(len(template))
    return [np.sort(order[s : s + MATCH_BATCH]) for s in range(0, len(order), MATCH_BATCH)]
