"""Rule embed_particles: encode every particle with a trained model -> latents table (TSV)."""

from pathlib import Path

import torch

from cryoavae.atomic import atomic_path
from cryoavae.embed import embed_particles
from cryoavae.particles import ParticleImages, read_particle_table
from cryoavae.pose_matching import OrientationConfig
from cryoavae.runlog import rule_logging
from cryoavae.template_matching import CtfModel

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
