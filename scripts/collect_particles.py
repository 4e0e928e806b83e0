"""Rule collect_particles: the shard tables as one STAR table."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.particles import merge_particle_tables

with rule_logging(snakemake.log[0], rule="collect_particles"):
    merge_particle_tables([Path(p) for p in snakemake.input.stars], Path(snakemake.output[0]))
