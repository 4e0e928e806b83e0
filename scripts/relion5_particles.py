"""Rule relion5_particles: the study's particles with the model's classes, orientations and
shifts as a RELION 5 tomography particle set, beside particles_annotated.star."""

from cryoavae.core.runlog import rule_logging
from cryoavae.inference.relion5 import write_relion5_particles

params = snakemake.params
with rule_logging(snakemake.log[0], rule="relion5_particles", variant=snakemake.wildcards.variant):
    write_relion5_particles(
        snakemake.input.annotated, params.class_names, snakemake.output[0], optics=params.optics
    )
