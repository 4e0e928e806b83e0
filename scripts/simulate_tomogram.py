"""Rule simulate_tomogram: one tomogram (sample, tilt series, reconstruction), its ground truth
and a figure of its central slice."""

from pathlib import Path

import numpy as np

from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.report.tomogram_figures import plot_tomogram_slice
from cryoavae.sources.tomogram import TomogramConfig, simulate_tomogram
from cryoavae.structures.density import read_map

params = snakemake.params
index = int(snakemake.wildcards.tomogram)
with rule_logging(snakemake.log[0], rule="simulate_tomogram", tomogram=index, seed=params.seed):
    use_threads(snakemake.threads)
    maps = np.stack([read_map(p)[0] for p in snakemake.input.maps])
    out = snakemake.output
    tomogram = simulate_tomogram(
        maps,
        params.class_names,
        set(params.unseen),
        TomogramConfig(**params.tomograms),
        index=index,
        seed=params.seed,
        voxel_size_angstrom=params.voxel_size_angstrom,
        box_size_px=params.box_size_px,
        tomogram_path=Path(out.tomogram),
        star_path=Path(out.star),
        locations_path=Path(out.locations),
        info_path=Path(out.info),
    )
    plot_tomogram_slice(out.central_slice, tomogram)
