"""Apply a trained model to particles it has never seen: latents, class, novelty.

This is the open-set use the paper argues for: particles extracted from a new tomogram are
encoded, each is assigned the seen class whose latent centroid (from the training particles) is
nearest in cosine (with the study's orientation step and one template per class: the class whose
template its orientation was matched against, as the study's own particles), and its novelty
says how unlike every training class it is: the study's novelty model
(``models/<variant>/novelty.json``, :mod:`cryoavae.inference.novelty`) scores it and flags it
novel above the threshold the study set on its own held-out particles.

The particles may be any STAR file of subtomograms: this pipeline's own tables, or a RELION /
Warp one (``rlnImageName`` as ``index@stack`` or one file per particle). With ``--out`` ending in
``.star`` the result is that same STAR file with the columns of :mod:`cryoavae.inference.annotate`
added (seen class, cosine, novelty, split ``applied``, UMAP position, orientation);
otherwise a TSV of the latents and the assignments. A particle flagged novel gets no orientation
or origin in the STAR file (:mod:`cryoavae.inference.annotate`: matched against a template of a
seen class, it has none of its own to be turned to); the TSV, like the study's ``latents.tsv``,
keeps the matcher's answer beside ``is_novel``, for a user who wants to look at it anyway.

Every row's split is ``applied``: the study never trained on, chose by nor held out these
particles (``unseen`` means a class held out of training). A set whose table has no
``cryoavaeClassName`` but an ``rlnClassNumber`` gets the study's name of that number, as a STAR
study reads its own file. With the study's ``umap.tsv`` each particle is placed in the study's
UMAP at the mean position of its nearest study particles
(:func:`cryoavae.inference.latents.place_by_neighbours`: the UMAP itself is not kept).

Command line::

    python -m cryoavae.inference.apply --model results/<study>/seed<k>/models/<variant>/model.pt \\
        --reference results/<study>/seed<k>/models/<variant>/latents.tsv \\
        --particles new_particles.star --out new_particles_annotated.star

(``--umap`` and ``--novelty`` default to the ``umap.tsv`` and ``novelty.json`` beside
``--reference``.)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.core.atomic import atomic_path
from cryoavae.core.config import (
    load_study_file,
    particle_microscope,
    particle_wedge,
    validate_config,
)
from cryoavae.core.errors import InputError
from cryoavae.core.runlog import command_line_errors
from cryoavae.geometry.ctf import CtfModel
from cryoavae.inference.annotate import annotate_particles, read_umap
from cryoavae.inference.embed import embed_particles
from cryoavae.inference.latents import (
    APPLIED,
    assign_nearest_class,
    fit_column,
    latent_columns,
    matched_classes,
    place_by_neighbours,
    read_latents,
)
from cryoavae.inference.novelty import (
    GAUSSIAN_SCORES,
    NoveltyModel,
    fit_novelty,
)
from cryoavae.inference.novelty_json import read_novelty_json
from cryoavae.orientation.templates import OrientationConfig
from cryoavae.particles import CLASS_NAME, ParticleImages, read_star_particles

log = logging.getLogger(__name__)


def apply_model(
    checkpoint_path: Path,
    particles_star: Path,
    reference: pd.DataFrame,
    orientation: OrientationConfig | None = None,
    seed: int = 0,
    ctf: CtfModel | None = None,
    umap: pd.DataFrame | None = None,
    novelty: NoveltyModel | None = None,
) -> pd.DataFrame:
    """Latents of the particles in ``particles_star`` plus ``nearest_seen``, ``nearest_cosine``
    (against the class centroids of the reference's training particles), ``novelty`` (the
    study's score), ``is_novel`` (above the study's threshold) and ``novelty_<score>`` for each
    score computed from the stored Gaussians (:data:`~cryoavae.inference.novelty.GAUSSIAN_SCORES`);
    split ``applied``; with the study's UMAP table ``umap`` (rows of ``reference``) also
    ``umap_x``, ``umap_y`` (module docstring).

    ``novelty``: the study's novelty model (``novelty.json``, read by
    :func:`~cryoavae.inference.novelty_json.read_novelty_json`);
    None: fitted on the reference's training particles with the default score, its threshold
    on the reference's val particles at the default recall.

    ``orientation``, ``seed`` and ``ctf`` are the study's: with ``template_matching`` the new
    particles are matched against templates of the reference's training particles, as the
    study's own particles were (None: the encoder's orientation)."""
    train = reference[reference["split"] == "train"]
    if train.empty:
        raise InputError("reference latents hold no training particles to build centroids from")
    mu_columns = latent_columns(train, "mu")
    if novelty is None:
        log.info("no novelty model given: fitting one on the reference's training particles")
        novelty = fit_novelty(reference, reference_classes(reference))
    table, _ = read_star_particles(particles_star)
    images = ParticleImages(table, particles_star)
    images.validate()
    latents = embed_particles(
        checkpoint_path,
        table,
        images,
        orientation=orientation,
        seed=seed,
        ctf=ctf,
        reference=reference,
    )
    if latent_columns(latents, "mu") != mu_columns:
        raise InputError(f"{checkpoint_path}: latent size differs from the reference latents")
    latents["split"] = APPLIED
    if CLASS_NAME not in table.columns:
        latents["class_name"] = _names_of_numbers(latents["class_number"], reference)
    mu = latents[mu_columns].to_numpy(np.float64)
    matched = matched_classes(latents)
    assigned = assign_nearest_class(mu, novelty.centroids, novelty.classes, matched)
    cheap = [s for s in GAUSSIAN_SCORES if s != novelty.score]
    scores = novelty.scores(mu, [novelty.score, *cheap], fit_column(latents), matched)
    assigned["novelty"] = scores[novelty.score].to_numpy()
    assigned["is_novel"] = novelty.is_novel(assigned["novelty"].to_numpy())
    assigned[[f"novelty_{s}" for s in scores.columns]] = scores.to_numpy()
    result = pd.concat([latents, assigned], axis=1)
    if umap is not None:
        placed = umap_positions(reference, umap, latents[mu_columns].to_numpy())
        result[["umap_x", "umap_y"]] = placed
    log.info(
        "applied %s to %d particles: classes %s, median novelty %.3f; %d flagged novel "
        "(%s above %.4g, the threshold keeping %.3f of the study's %s particles)",
        checkpoint_path,
        len(result),
        result["nearest_seen"].value_counts().to_dict(),
        result["novelty"].median() if len(result) else float("nan"),
        int(result["is_novel"].sum()),
        novelty.score,
        novelty.threshold,
        novelty.seen_recall,
        novelty.calibration_split,
    )
    _log_flagged_by_class(result)
    return result


def _log_flagged_by_class(result: pd.DataFrame) -> None:
    """Where a set's rows name their classes (a simulated tomogram's picks, ``background`` for
    false positives): the fraction of each class flagged novel."""
    names = result["class_name"].astype(str)
    if len(result) == 0 or set(names) <= {"unknown"}:
        return
    flagged = result.groupby(names)["is_novel"].agg(["mean", "size"])
    log.info(
        "flagged novel by the set's own class names: %s",
        ", ".join(f"{c} {r['mean']:.2f} of {int(r['size'])}" for c, r in flagged.iterrows()),
    )


def _names_of_numbers(numbers: pd.Series, reference: pd.DataFrame) -> list[str]:
    """The study's class name of each class number (``unknown`` for 0 or a number the study
    never named), read from the reference's pairs of number and name."""
    if "class_number" not in reference.columns:
        return ["unknown"] * len(numbers)
    pairs = reference[reference["class_number"] > 0].drop_duplicates("class_number")
    named = pd.Series(pairs["class_name"].astype(str).to_numpy(), index=pairs["class_number"])
    return numbers.map(named).fillna("unknown").astype(str).tolist()


def umap_positions(reference: pd.DataFrame, umap: pd.DataFrame, mu: np.ndarray) -> np.ndarray:
    """Where particles ``mu`` ``(m, k)`` sit in the study's UMAP ``(m, 2)``: ``umap`` is the
    study's ``umap.tsv`` (``image``, ``umap_x``, ``umap_y``, one row per ``reference`` row).

    Raises:
        InputError: the UMAP table does not hold the reference's particles in their order.
    """
    images = reference["image"].astype(str).to_numpy()
    if len(umap) != len(reference) or not (umap["image"].astype(str).to_numpy() == images).all():
        raise InputError(
            f"the UMAP table ({len(umap)} rows) does not list the reference latents' "
            f"{len(reference)} particles in their order: give the umap.tsv of the same variant"
        )
    fitted = reference[latent_columns(reference, "mu")].to_numpy()
    return place_by_neighbours(fitted, umap[["umap_x", "umap_y"]].to_numpy(), mu)


def reference_classes(reference: pd.DataFrame) -> list[str]:
    """The study's class list as far as the reference latents show: entry ``k - 1`` names class
    number ``k`` (``""`` for a number without particles), so that a predicted class's number is
    its number in the study; names outside the list (class number 0) are left out. A reference
    without class numbers (not one the workflow wrote) numbers its names as they first appear."""
    if "class_number" not in reference:
        return list(dict.fromkeys(reference["class_name"].astype(str)))
    pairs = reference[reference["class_number"] > 0].drop_duplicates("class_number")
    names = [""] * int(pairs["class_number"].max() if len(pairs) else 0)
    for number, name in zip(pairs["class_number"], pairs["class_name"], strict=True):
        names[int(number) - 1] = str(name)
    return names


def write_results(
    path: str | Path,
    particles_star: Path,
    result: pd.DataFrame,
    reference: pd.DataFrame,
    novelty: NoveltyModel | None = None,
) -> None:
    """``.star``: the particle STAR file annotated (:mod:`cryoavae.inference.annotate`) with the
    study's ``novelty`` model (None: one fitted on the reference); else a TSV."""
    if Path(path).suffix.lower() == ".star":
        umap_xy = result[["umap_x", "umap_y"]] if "umap_x" in result.columns else None
        classes = reference_classes(reference)
        annotate_particles(
            particles_star, result, reference, classes, path, umap_xy=umap_xy, novelty=novelty
        )
    else:
        write_assignments(path, result)


def write_assignments(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def _study_settings(path: Path) -> dict:
    """``orientation``, ``seed`` and ``ctf`` of a study config, as the workflow passes them."""
    config = validate_config(load_study_file(path), source=str(path))
    microscope = particle_microscope(config)
    return {
        "orientation": OrientationConfig.from_dict(
            {**config["orientation"], "wedge_tilt_max_deg": particle_wedge(config)}
        ),
        "seed": config["seed"],
        "ctf": CtfModel(**microscope) if microscope else None,
    }


def _study_umap(path: Path | None, reference: Path) -> pd.DataFrame | None:
    """The UMAP table named, else the one beside the reference latents (as the workflow writes
    them), else None: the particles are then not placed in the UMAP."""
    if path is not None:
        return read_umap(path)
    beside = reference.with_name("umap.tsv")
    if beside.is_file():
        return read_umap(beside)
    log.info("no %s: the particles get no UMAP position (give --umap)", beside)
    return None


def _study_novelty(path: Path | None, reference_path: Path, reference: pd.DataFrame):
    """The novelty model named, else the one beside the reference latents, else None (then one
    is fitted on the reference: older studies wrote none)."""
    if path is not None:
        return read_novelty_json(path, reference)
    beside = reference_path.with_name("novelty.json")
    if beside.is_file():
        return read_novelty_json(beside, reference)
    log.info("no %s: fitting the novelty model on the reference (give --novelty)", beside)
    return None


EXAMPLE = """example:
  {prog} --model results/mine/seed0/models/avae/model.pt \\
      --reference results/mine/seed0/models/avae/latents.tsv \\
      --particles new_particles.star --out new_particles_annotated.star \\
      --config config/mine.yaml"""


def main(argv: list[str] | None = None, prog: str = "python -m cryoavae.inference.apply") -> int:
    """The command line; ``prog`` is how it was called (``cryoavae apply`` hands it on)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.splitlines()[0],
        epilog=EXAMPLE.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, help="trained model.pt")
    parser.add_argument("--reference", required=True, type=Path, help="latents.tsv of its study")
    parser.add_argument("--particles", required=True, type=Path, help="STAR table of new particles")
    parser.add_argument(
        "--out", required=True, type=Path, help="output: annotated .star, or .tsv of latents"
    )
    parser.add_argument(
        "--umap",
        type=Path,
        help="umap.tsv of its study, to place the particles in the study's UMAP (default: the "
        "umap.tsv beside --reference, when there is one)",
    )
    parser.add_argument(
        "--novelty",
        type=Path,
        help="novelty.json of its study: the novelty score and the threshold that flags a "
        "particle novel (default: the novelty.json beside --reference, when there is one)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="the study's config file: its orientation step (e.g. template matching), seed and "
        "missing wedge are applied to the new particles as to the study's own",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with command_line_errors(parser.prog):
        reference = read_latents(args.reference)
        settings = _study_settings(args.config) if args.config else {}
        umap = _study_umap(args.umap, args.reference)
        novelty = _study_novelty(args.novelty, args.reference, reference)
        result = apply_model(
            args.model, args.particles, reference, umap=umap, novelty=novelty, **settings
        )
        write_results(args.out, args.particles, result, reference, novelty)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
