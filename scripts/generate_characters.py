"""Rule generate_characters: the 2-D character images (.mrcs stack + STAR table)."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.sources.characters import CharacterConfig, generate_characters

params = snakemake.params
with rule_logging(snakemake.log[0], rule="generate_characters", seed=params.seed):
    generate_characters(
        CharacterConfig(**params.characters),
        seed=params.seed,
        stack_path=Path(snakemake.output.stack),
        star_path=Path(snakemake.output.star),
    )
