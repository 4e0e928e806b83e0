"""Rule embed_particles: the inference jobs' parts gathered into the latents table (TSV)."""

from cryoavae.core.atomic import atomic_path
from cryoavae.core.runlog import rule_logging
from cryoavae.inference.embed import with_matches
from cryoavae.inference.jobs import gather_parts
from cryoavae.inference.recentre import with_recentring
from cryoavae.particles import read_particle_table

with rule_logging(snakemake.log[0], rule="embed_particles", variant=snakemake.wildcards.variant):
    latents = gather_parts(snakemake.input.encoded)
    if snakemake.input.matched:
        latents = with_matches(latents, gather_parts(snakemake.input.matched))
    latents = with_recentring(latents, read_particle_table(snakemake.input.particles))
    with atomic_path(snakemake.output[0]) as tmp:
        latents.to_csv(tmp, sep="\t", index=False)
