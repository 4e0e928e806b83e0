"""Rule copick_picks: a variant's annotated particles back into the copick project, as picks of
user cryoavae with session the variant's name (one file per run and seen class, under the
overlay root); the manifest lists the files written."""

from cryoavae.core.copick_config import read_copick_project
from cryoavae.core.runlog import rule_logging
from cryoavae.sources.copick import write_copick_results

params = snakemake.params
variant = snakemake.wildcards.variant
with rule_logging(snakemake.log[0], rule="copick_picks", variant=variant):
    write_copick_results(
        read_copick_project(snakemake.input.config),
        snakemake.input.annotated,
        params.runs,
        params.seen_classes,
        variant,
        params.voxel_spacing,
        snakemake.output[0],
    )
