"""The orientation embedding reports when ``orientation.method`` is ``template_matching``.

The search itself is :mod:`cryoavae.template_matching`; this module chooses its templates. A
template is the decoder's canonical rendering of a k-means centre of the training particles'
``mu`` (seeded), and each particle (train, val or unseen) is matched against its nearest
centre's template: the labels are never read, so a plain beta-VAE gets the same treatment.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.cluster import KMeans

from .schema import section_dataclass
from .template_matching import CtfModel, TemplateMatcher

__all__ = ["OrientationConfig", "matched_orientations"]

log = logging.getLogger(__name__)

MATCH_BATCH = 1024  # particles read and matched at once


class OrientationConfig(section_dataclass("orientation")):
    """The ``orientation`` section: ``method`` (``encoder`` or ``template_matching``),
    ``templates`` (k-means centres; 0 = one per seen class), ``grid_step_deg``,
    ``refinement_levels`` and ``ctf`` (see the schema)."""


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
) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``(n, 3, 3)`` (RELION's ``A`` in the model's canonical frame) and the template
    each particle was matched against ``(n,)``; ``images`` gives the ``n`` rows of ``mu``."""
    started = time.perf_counter()
    n_templates = max(1, min(n_templates, len(train_rows)))
    kmeans = KMeans(n_clusters=n_templates, n_init=4, random_state=seed).fit(mu[train_rows])
    template = kmeans.predict(mu).astype(np.int64)
    with torch.inference_mode():
        centres = torch.from_numpy(kmeans.cluster_centers_.astype(np.float32))
        templates = model.decode(centres)[:, 0].float().cpu().numpy()  # identity pose
    matcher = TemplateMatcher(
        templates,
        model.config.wedge_tilt_max_deg,
        ctf if config.ctf else None,
        config.grid_step_deg,
        config.refinement_levels,
    )
    n = len(mu)
    rotations = np.empty((n, 3, 3))
    for start in range(0, n, MATCH_BATCH):
        rows = np.arange(start, min(n, start + MATCH_BATCH))
        focus = None if defocus_um is None else defocus_um[rows]
        rotations[rows], _ = matcher.match(images.gather(rows), template[rows], focus)
    log.info(
        "template matching: %d particles against %d templates, %d grid rotations, %d local "
        "levels, CTF %s: %.1f s",
        n,
        n_templates,
        len(matcher.grid),
        len(matcher.local),
        "on" if matcher.ctf is not None else "off",
        time.perf_counter() - started,
    )
    return rotations, template
