"""Rule embed_particles: the inference jobs' parts gathered into the latents table (TSV)."""

from cryoavae.core.atomic import atomic_path
from cryoavae.core.runlog import rule_logging
from cryoavae.inference.embed import with_matches
from cryoavae.inference.jobs import gather_parts

with rule_logging(snakemake.log[0], rule="embed_particles", variant=snakemake.wildcards.variant):
    latents = gather_parts(snakemake.input.encoded)
    if snakemake.input.matched:
        latents = with_matches(latents, gather_parts(snakemake.input.matched))
    with atomic_path(snakemake.output[0]) as tmp:
        latents.to_csv(tmp, sep="\t", index=False)
