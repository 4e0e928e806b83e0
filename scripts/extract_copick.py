"""Rule extract_copick: one copick run's tomogram (OME-Zarr, the level nearest the study's voxel
size, read slab by slab) cut at its picks, exactly as extract_subtomograms cuts an MRC tomogram:
the copick reader hands the extraction a tomogram and a particle list (sources never import each
other, so the two meet here)."""

from pathlib import Path

import numpy as np

from cryoavae.core.copick_config import read_copick_project
from cryoavae.core.runlog import rule_logging
from cryoavae.sources.copick import (
    LOCATION_COLUMNS,
    RUN_COLUMN,
    CopickConfig,
    open_copick_tomogram,
    read_copick_picks,
)
from cryoavae.sources.extract import ExtractionConfig, Tomogram, extract_particles

params = snakemake.params
shard = int(snakemake.wildcards.shard)
run = params.run
with rule_logging(snakemake.log[0], rule="extract_copick", shard=shard, run=run, seed=params.seed):
    settings = CopickConfig(**params.copick)
    project = read_copick_project(snakemake.input.config)
    tomogram = open_copick_tomogram(
        project, run, settings.voxel_spacing, settings.tomo_type, params.voxel_size_angstrom
    )
    picks = read_copick_picks(
        project, run, params.class_names, settings.user_id, settings.session_id
    )
    shape_xyz = np.asarray(tomogram.array.shape[::-1], dtype=np.float64)
    picks.refuse_outside(shape_xyz * tomogram.voxel_size_angstrom)
    fractions = {"val_fraction": settings.val_fraction, "test_fraction": settings.test_fraction}
    extract_particles(
        Tomogram(tomogram.array, tomogram.voxel_size_angstrom, str(tomogram.path)),
        picks.particle_list(tomogram.voxel_size_angstrom),
        params.class_names,
        list(params.unseen),
        ExtractionConfig(**{**params.extraction, **fractions}),
        seed=params.seed,
        stack_path=Path(snakemake.output.stack),
        star_path=Path(snakemake.output.star),
        shard=shard,
        list_name=f"the picks of run {run}",
        columns={RUN_COLUMN: run, **dict(zip(LOCATION_COLUMNS, picks.locations.T, strict=True))},
        box_centres=True,
        tomo_name=run,
    )
