"""Rule match_particles: one part of the particle table matched against the shared references."""

from cryoavae.core.atomic import atomic_path
from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.geometry.ctf import CtfModel
from cryoavae.inference.embed import match_encoded
from cryoavae.inference.jobs import job_rows, read_part, table_part
from cryoavae.orientation.templates import OrientationConfig, References
from cryoavae.particles import ParticleImages, read_particle_table

wildcards = snakemake.wildcards
with rule_logging(snakemake.log[0], rule="match_particles", variant=wildcards.variant):
    use_threads(snakemake.threads)
    table = read_particle_table(snakemake.input.particles)
    images = ParticleImages(table, snakemake.input.particles)
    params = snakemake.params
    rows = job_rows(len(table), int(wildcards.job), params.jobs)
    part, part_images = table_part(table, images, rows)
    matched = match_encoded(
        References.load(snakemake.input.references),
        read_part(snakemake.input.encoded),
        part,
        part_images,
        OrientationConfig.from_dict(params.orientation),
        CtfModel(**params.microscope) if params.microscope else None,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        matched.to_csv(tmp, sep="\t", index=False)
