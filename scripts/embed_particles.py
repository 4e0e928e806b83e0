"""Rule embed_particles: encode every particle with a trained model -> latents table (TSV)."""

from pathlib import Path

import torch

from cryoavae.core.atomic import atomic_path
from cryoavae.core.runlog import rule_logging
from cryoavae.inference.embed import embed_particles
from cryoavae.orientation.matcher import CtfModel
from cryoavae.orientation.templates import OrientationConfig
from cryoavae.particles import ParticleImages, read_particle_table

with rule_logging(snakemake.log[0], rule="embed_particles", variant=snakemake.wildcards.variant):
    torch.set_num_threads(snakemake.threads)
    table = read_particle_table(snakemake.input.particles)
    images = ParticleImages(table, snakemake.input.particles)
    params = snakemake.params
    latents = embed_particles(
        Path(snakemake.input.model),
        table,
        images,
        orientation=OrientationConfig.from_dict(params.orientation),
        seed=params.seed,
        ctf=CtfModel(**params.microscope) if params.microscope else None,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        latents.to_csv(tmp, sep="\t", index=False)
