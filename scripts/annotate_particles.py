"""Rule annotate_particles: the study's particles (your own STAR file, for a STAR study) with
each particle's nearest seen class, cosine, novelty (and whether it is flagged novel), split and
UMAP position added."""

from cryoavae.core.runlog import rule_logging
from cryoavae.inference.annotate import SOURCE_ROW, annotate_particles, read_umap
from cryoavae.inference.latents import read_latents
from cryoavae.inference.novelty_json import read_novelty_json
from cryoavae.particles import read_particle_table

inputs = snakemake.input
with rule_logging(snakemake.log[0], rule="annotate_particles", variant=snakemake.wildcards.variant):
    latents = read_latents(inputs.latents)
    ours = read_particle_table(inputs.particles)
    annotate_particles(
        inputs.source,
        latents,
        latents,
        snakemake.params.class_names,
        snakemake.output[0],
        umap_xy=read_umap(inputs.umap_table),
        source_rows=ours[SOURCE_ROW].to_numpy() if SOURCE_ROW in ours else None,
        novelty=read_novelty_json(inputs.novelty, latents),
    )
