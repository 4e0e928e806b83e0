"""Rule simulate_subtomograms: one shard of simulated particles (.mrcs stack + STAR table)."""

from pathlib import Path

import numpy as np

from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.sources.simulate import SimulationConfig, simulate_shard
from cryoavae.structures.density import read_map

params = snakemake.params
shard = int(snakemake.wildcards.shard)
with rule_logging(snakemake.log[0], rule="simulate_subtomograms", shard=shard, seed=params.seed):
    use_threads(snakemake.threads)
    config = SimulationConfig(**params.simulation)
    maps = np.stack([read_map(p)[0] for p in snakemake.input.maps])
    simulate_shard(
        maps,
        params.class_names,
        set(params.unseen),
        config,
        shard=shard,
        seed=params.seed,
        voxel_size_angstrom=params.voxel_size_angstrom,
        stack_path=Path(snakemake.output.stack),
        star_path=Path(snakemake.output.star),
        threads=snakemake.threads,
    )
