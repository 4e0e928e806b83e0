"""Rule import_star_particles: the study's particle table over the user's STAR file (in place)."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.sources.star import StarSourceConfig, import_star_particles

params = snakemake.params
with rule_logging(snakemake.log[0], rule="import_star_particles", seed=params.seed):
    import_star_particles(
        Path(snakemake.input.star),
        params.class_names,
        params.unseen,
        StarSourceConfig.from_dict(params.star),
        seed=params.seed,
        out_path=Path(snakemake.output[0]),
    )
