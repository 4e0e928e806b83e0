"""Rule extract_picks: the picks of one simulated tomogram, false positives included, as a
particle set for apply.particle_sets."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.sources.extract import ExtractionConfig, extract_subtomograms

params = snakemake.params
shard = int(snakemake.wildcards.shard)
with rule_logging(snakemake.log[0], rule="extract_picks", shard=shard, seed=params.seed):
    extract_subtomograms(
        Path(snakemake.input.tomogram),
        Path(snakemake.input.particles),
        params.class_names,
        set(params.unseen),
        ExtractionConfig(**params.extraction),
        seed=params.seed,
        stack_path=Path(snakemake.output.stack),
        star_path=Path(snakemake.output.star),
        shard=shard,
    )
