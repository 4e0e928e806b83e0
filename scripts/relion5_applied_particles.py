"""Rule relion5_applied_particles: a new particle set with the model's classes, orientations and
shifts as a RELION 5 tomography particle set, beside the set's annotated STAR file."""

from cryoavae.core.runlog import rule_logging
from cryoavae.inference.relion5 import write_relion5_particles

params, wildcards = snakemake.params, snakemake.wildcards
with rule_logging(
    snakemake.log[0],
    rule="relion5_applied_particles",
    variant=wildcards.variant,
    particle_set=wildcards.particle_set,
):
    write_relion5_particles(
        snakemake.input.annotated, params.class_names, snakemake.output[0], optics=params.optics
    )
