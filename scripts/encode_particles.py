"""Rule encode_particles: one part of the particle table through the trained encoder."""

from pathlib import Path

from cryoavae.core.atomic import atomic_path
from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.inference.embed import encode_particles
from cryoavae.inference.jobs import job_rows, table_part
from cryoavae.particles import ParticleImages, read_particle_table

wildcards = snakemake.wildcards
with rule_logging(snakemake.log[0], rule="encode_particles", variant=wildcards.variant):
    use_threads(snakemake.threads)
    table = read_particle_table(snakemake.input.particles)
    images = ParticleImages(table, snakemake.input.particles)
    rows = job_rows(len(table), int(wildcards.job), snakemake.params.jobs)
    part, part_images = table_part(table, images, rows)
    encoded = encode_particles(Path(snakemake.input.model), part, part_images)
    with atomic_path(snakemake.output[0]) as tmp:
        encoded.to_csv(tmp, sep="\t", index=False)
