"""Apply a trained model to particles it has never seen: latents, nearest class, novelty.

This is the open-set use the paper argues for: particles extracted from a new tomogram are
encoded, each is assigned the seen class whose latent centroid (from the training particles) is
nearest in cosine, and its novelty (1 - that cosine) says how unlike every training class it is.

The particles may be any STAR file of subtomograms: this pipeline's own tables, or a RELION /
Warp one (``rlnImageName`` as ``index@stack`` or one file per particle). With ``--out`` ending in
``.star`` the result is that same STAR file with the columns of :mod:`cryoavae.inference.annotate`
added (nearest seen class, cosine, novelty); otherwise a TSV of the latents and the assignments.

Command line::

    python -m cryoavae.inference.apply --model results/<study>/seed<k>/models/<variant>/model.pt \\
        --reference results/<study>/seed<k>/models/<variant>/latents.tsv \\
        --particles new_particles.star --out new_particles_annotated.star
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
from cryoavae.inference.annotate import annotate_particles
from cryoavae.inference.embed import embed_particles
from cryoavae.inference.latents import (
    assign_nearest_class,
    class_centroids,
    latent_columns,
    read_latents,
)
from cryoavae.orientation.templates import OrientationConfig
from cryoavae.particles import ParticleImages, read_star_particles

log = logging.getLogger(__name__)


def apply_model(
    checkpoint_path: Path,
    particles_star: Path,
    reference: pd.DataFrame,
    orientation: OrientationConfig | None = None,
    seed: int = 0,
    ctf: CtfModel | None = None,
) -> pd.DataFrame:
    """Latents of the particles in ``particles_star`` plus ``nearest_seen``, ``nearest_cosine``
    and ``novelty``, against the class centroids of the reference's training particles.

    ``orientation``, ``seed`` and ``ctf`` are the study's: with ``template_matching`` the new
    particles are matched against templates of the reference's training particles, as the
    study's own particles were (None: the encoder's orientation)."""
    train = reference[reference["split"] == "train"]
    if train.empty:
        raise InputError("reference latents hold no training particles to build centroids from")
    seen = sorted(train["class_name"].unique())
    mu_columns = latent_columns(train, "mu")
    centroids = class_centroids(train[mu_columns].to_numpy(), train["class_name"].to_numpy(), seen)
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
    assigned = assign_nearest_class(latents[mu_columns].to_numpy(), centroids, seen)
    result = pd.concat([latents, assigned], axis=1)
    log.info(
        "applied %s to %d particles: nearest classes %s, median novelty %.3f",
        checkpoint_path,
        len(result),
        result["nearest_seen"].value_counts().to_dict(),
        result["novelty"].median() if len(result) else float("nan"),
    )
    return result


def reference_classes(reference: pd.DataFrame) -> list[str]:
    """The study's class names in class-number order, as far as the reference latents show."""
    pairs = reference[["class_number", "class_name"]].drop_duplicates()
    return pairs.sort_values("class_number")["class_name"].astype(str).tolist()


def write_results(
    path: str | Path, particles_star: Path, result: pd.DataFrame, reference: pd.DataFrame
) -> None:
    """``.star``: the particle STAR file annotated (:mod:`cryoavae.inference.annotate`); else a
    TSV."""
    if Path(path).suffix.lower() == ".star":
        annotate_particles(particles_star, result, reference, reference_classes(reference), path)
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
        result = apply_model(args.model, args.particles, reference, **settings)
        write_results(args.out, args.particles, result, reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
