"""Rule recentre_particles: the particle table with the centres a variant's matching found."""

from cryoavae.core.runlog import rule_logging
from cryoavae.inference.latents import read_latents
from cryoavae.inference.recentre import recentred_table
from cryoavae.particles import read_particle_table, write_particle_table

inputs = snakemake.input
with rule_logging(snakemake.log[0], rule="recentre_particles", variant=snakemake.wildcards.variant):
    table = recentred_table(
        read_particle_table(inputs.particles), read_latents(inputs.latents), inputs.latents
    )
    write_particle_table(snakemake.output[0], table)
