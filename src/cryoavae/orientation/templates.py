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
With ``candidate_templates`` k > 1 the search is confined to each particle's k nearest centres:
each is searched over the global grid and the one that explains most of the particle there is
refined. The reference iterations refine each template on particles of its own centre only:
when particles could move to whichever template fits them, two large complexes' templates
traded their particles and with them their identities (docs/science.md 4.10).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from cryoavae.core.atomic import atomic_path
from cryoavae.core.schema import section_dataclass
from cryoavae.geometry.ctf import CtfModel
from cryoavae.orientation.averaging import centred_on_mass, class_average
from cryoavae.orientation.centres import class_centres, directions, template_centres
from cryoavae.orientation.matches import Matches
from cryoavae.orientation.matching import match_all

__all__ = [
    "OrientationConfig",
    "References",
    "fit_references",
    "match_references",
    "match_with_references",
    "matched_orientations",
    "refine_references",
    "template_centres",
]

log = logging.getLogger(__name__)


class OrientationConfig(
    section_dataclass("orientation", extra=[("wedge_tilt_max_deg", float, None)])
):
    """The ``orientation`` section: ``method`` (``encoder`` or ``template_matching``),
    ``templates`` (k-means centres; 0 = one per seen class), ``grid_step_deg``,
    ``global_resolution_px``, ``refinement_levels``, ``reference_iterations``, ``assignment``,
    ``candidate_templates``, ``centre_metric`` and ``ctf`` (see the schema); and the particles'
    missing wedge ``wedge_tilt_max_deg`` (the study's ``missing_wedge``, None for none), which
    templates are matched and averaged through."""


@dataclass(frozen=True)
class References:
    """What every matching job of a variant shares: the ``templates`` ``(m, d, d, d)`` the
    particles are matched against (the decoder's renderings, refined into averages), and the
    k-means ``centres`` ``(m, k)``, in the space they were fitted in (``metric``), that choose
    each particle's template from its ``mu``. ``frame_offsets_px`` ``(m, 3)`` (x, y, z voxels):
    where each template's box centre sits in the decoder's frame (the templates are moved onto
    their centres of mass), so that a centre guess made in that frame (the encoder's shift head)
    is trusted only as far as this offset, turned by the unknown rotation, can move it.
    ``classes`` ``(m,)``: the class each template was rendered from (one per class), or None
    (k-means centres, which name no class)."""

    templates: np.ndarray
    centres: np.ndarray
    metric: str
    frame_offsets_px: np.ndarray | None = None
    classes: np.ndarray | None = None

    def nearest(self, mu: np.ndarray) -> np.ndarray:
        """Each row of ``mu``'s template ``(n,)``: its nearest centre, as k-means assigns."""
        return self.candidates(mu, 1)[:, 0]

    def candidates(self, mu: np.ndarray, k: int) -> np.ndarray:
        """Each row of ``mu``'s ``k`` nearest centres ``(n, min(k, m))``, nearest first."""
        points = directions(mu) if self.metric == "cosine" else np.asarray(mu, np.float64)
        distances = (
            (points**2).sum(1)[:, None]
            - 2 * points @ self.centres.T
            + (self.centres**2).sum(1)[None, :]
        )
        k = max(1, min(k, len(self.centres)))
        return np.argsort(distances, axis=1, kind="stable")[:, :k].astype(np.int64)

    def save(self, path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                templates=self.templates,
                centres=self.centres,
                metric=self.metric,
                frame_offsets_px=self.offsets(),
                classes=np.asarray([] if self.classes is None else self.classes, dtype=str),
            )

    @classmethod
    def load(cls, path) -> References:
        with np.load(path, allow_pickle=False) as saved:
            offsets = saved["frame_offsets_px"] if "frame_offsets_px" in saved.files else None
            classes = saved["classes"] if "classes" in saved.files else np.zeros(0, str)
            return cls(
                saved["templates"],
                saved["centres"],
                str(saved["metric"]),
                offsets,
                classes.astype(str) if len(classes) else None,
            )

    def offsets(self) -> np.ndarray:
        """``frame_offsets_px``, zeros where none were recorded (templates never moved)."""
        if self.frame_offsets_px is None:
            return np.zeros((len(self.templates), 3))
        return np.asarray(self.frame_offsets_px, dtype=np.float64)


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
    template each particle was matched against; ``images`` gives the ``n`` rows of ``mu``: the
    references of :func:`fit_references`, then every particle matched against them."""
    references = fit_references(
        model, mu, train_rows, n_templates, images, config, seed, defocus_um, ctf, fit_mu
    )
    return match_references(references, mu, images, config, defocus_um, ctf)


def fit_references(
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
    centre_guess_px: np.ndarray | None = None,
    fit_labels: np.ndarray | None = None,
) -> References:
    """The templates of ``n_templates`` k-means centres fitted on ``mu[train_rows]`` (or on
    ``fit_mu``: a new particle set is matched against the templates of the study's own training
    particles), or, given the class of each of those rows (``fit_labels``), of each class's mean;
    rendered by the decoder and refined on a seeded subset of the particles (at most
    ``config.reference_particles`` per template; ``images`` gives the rows of ``mu``, and
    ``centre_guess_px`` where their centres are thought to be, see :func:`match_references`)."""
    started = time.perf_counter()
    fit = mu[train_rows] if fit_mu is None else fit_mu
    classes = None
    if fit_labels is None:
        centres, space_centres = template_centres(fit, n_templates, config.centre_metric, seed)
    else:
        centres, space_centres = class_centres(fit, fit_labels, config.centre_metric)
        classes = np.unique(np.asarray(fit_labels).astype(str))  # class_centres' order
    with torch.inference_mode():
        device = next(model.parameters()).device
        rendered = torch.from_numpy(centres.astype(np.float32)).to(device)
        templates = model.decode(rendered)[:, 0].float().cpu().numpy()  # identity pose
    offsets = np.zeros((len(templates), 3))
    if config.max_shift_angstrom > 0:  # shifts are then found relative to each centre of mass
        templates, offsets = centred_on_mass(templates)
    references = References(templates, space_centres, config.centre_metric)
    template = _candidates(references, mu, config)
    rows = _reference_rows(template[:, 0], config.reference_particles, seed)
    focus = None if defocus_um is None else defocus_um[rows]
    guess = None if centre_guess_px is None else centre_guess_px[rows]
    templates, offsets = refine_references(
        templates, template[rows, 0], images.subset(rows), config, focus, ctf, guess, offsets
    )
    log.info(
        "references: %d templates, %d reference iterations on %d of %d particles: %.1f s",
        len(templates),
        config.reference_iterations,
        len(rows),
        len(mu),
        time.perf_counter() - started,
    )
    return References(templates, space_centres, config.centre_metric, offsets, classes)


def match_references(
    references: References,
    mu: np.ndarray,
    images,
    config: OrientationConfig,
    defocus_um: np.ndarray | None = None,
    ctf: CtfModel | None = None,
    centre_guess_px: np.ndarray | None = None,
) -> Matches:
    """Each particle (a row of ``mu``, its image in ``images``) matched against its nearest
    centre's template (the best-fitting of its ``config.candidate_templates`` nearest), or with
    ``config.assignment: best_match`` against whichever fits best;
    ``centre_guess_px`` ``(n, 3)`` (x, y, z voxels; e.g. the encoder's shift head): where each
    particle's centre is thought to be, the translation search's centring then stays near it."""
    return match_all(
        references.templates,
        _candidates(references, mu, config),
        images,
        config,
        defocus_um,
        ctf,
        guess=centre_guess_px,
        frame_offsets_px=references.offsets(),
    )


def match_with_references(
    templates: np.ndarray,
    template_index: np.ndarray,
    images,
    config: OrientationConfig,
    defocus_um: np.ndarray | None = None,
    ctf: CtfModel | None = None,
) -> Matches:
    """The particles of ``images`` matched against the references :func:`refine_references`
    makes of ``templates`` from them (each against ``templates[template_index]``, or the best)."""
    refined, _ = refine_references(templates, template_index, images, config, defocus_um, ctf)
    return match_all(refined, template_index, images, config, defocus_um, ctf)


def _candidates(references: References, mu: np.ndarray, config: OrientationConfig) -> np.ndarray:
    """The templates ``(n, k)`` each particle is searched against, nearest centre first: with
    ``best_match`` the nearest only (the search then tries every template itself)."""
    k = 1 if config.assignment == "best_match" else config.candidate_templates
    return references.candidates(mu, k)


def _reference_rows(template: np.ndarray, per_template: int, seed: int) -> np.ndarray:
    """The rows ``(r,)`` (sorted) the references are refined on: of each template's particles,
    at most ``per_template`` drawn with ``seed`` (0: every particle)."""
    if per_template <= 0:
        return np.arange(len(template))
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(template == c))[:per_template] for c in np.unique(template)
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def refine_references(
    templates: np.ndarray,
    template_index: np.ndarray,
    images,
    config: OrientationConfig,
    defocus_um: np.ndarray | None = None,
    ctf: CtfModel | None = None,
    centre_guess_px: np.ndarray | None = None,
    frame_offsets_px: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The templates after ``config.reference_iterations`` rounds of averaging: the particles of
    ``images`` matched against ``templates[template_index]`` (with ``config.assignment:
    best_match``, against whichever fits best), each template replaced by the average of its
    particles turned and moved back by what was found (through their missing wedge,
    ``config.wedge_tilt_max_deg``; CTF-corrected with ``config.ctf``), and matched again for
    the next round. With a translation search each average is moved onto its centre of mass;
    the second value ``(m, 3)`` is where each template's box centre then sits in the frame the
    centre guesses refer to (starting from ``frame_offsets_px``, zeros if None)."""
    templates = np.array(templates, dtype=np.float32)  # a copy: the averages replace it
    offsets = np.zeros((len(templates), 3))
    if frame_offsets_px is not None:
        offsets = np.array(frame_offsets_px, dtype=np.float64)
    searched = config.max_shift_angstrom > 0  # then every reference is kept centred on its mass
    found = None
    rounds = config.reference_iterations
    candidates = np.asarray(template_index).ndim == 2  # then chosen again every round
    for iteration in range(rounds):
        index = template_index if found is None or candidates else found.templates
        what = f"matching reference particles (iteration {iteration + 1}/{rounds})"
        found = match_all(
            templates, index, images, config, defocus_um, ctf, what, centre_guess_px, offsets
        )
        for c in np.unique(found.templates):  # a template no particle chose stays as it was
            rows = np.flatnonzero(found.templates == c)
            average = class_average(
                images,
                rows,
                found.rotations[rows],
                config.wedge_tilt_max_deg,
                found.shifts_px[rows],
                ctf if config.ctf and defocus_um is not None else None,
                None if defocus_um is None else np.asarray(defocus_um)[rows],
            )
            if searched:  # the average's centre is its particles'; the reference's, its mass
                centred, mass = centred_on_mass(average[None])
                average, offsets[c] = centred[0], offsets[c] + mass[0]
            templates[c] = average
    return templates, offsets
