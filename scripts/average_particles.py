"""Rule average_particles: per seen class, the subtomogram average from the model's orientations
(and from the true ones when known), its FSC with the class's map, as MRC, TSV and a figure;
in 3-D also how well each class's decoded mean fits its map (:mod:`cryoavae.evaluate.decoded`)."""

import numpy as np

from cryoavae.core.atomic import atomic_path
from cryoavae.core.runlog import rule_logging
from cryoavae.evaluate.averages import average_classes
from cryoavae.evaluate.decoded import decoded_class_means, shape_agreement
from cryoavae.inference.latents import read_latents
from cryoavae.model.vae import load_model
from cryoavae.particles import (
    ParticleImages,
    read_particle_table,
    recorded_offsets_px,
    table_voxel_size,
    write_stack,
)
from cryoavae.report.average_figures import plot_average_fsc
from cryoavae.structures.density import read_map
from cryoavae.structures.symmetry import read_symmetry

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
with rule_logging(snakemake.log[0], rule="average_particles", variant=snakemake.wildcards.variant):
    table = read_particle_table(inputs.particles)
    voxel = table_voxel_size(table, inputs.particles)
    maps = {
        name: read_map(path)[0] for name, path in zip(params.structures, inputs.maps, strict=True)
    }
    latents = read_latents(inputs.latents)
    known_shifts = recorded_offsets_px(table, voxel)  # go with the table's own angles
    volumes, summary, curves = average_classes(
        latents,
        ParticleImages(table, inputs.particles),
        params.class_names,
        maps,
        voxel,
        params.wedge_tilt_max_deg,
        read_symmetry(inputs.symmetry[0]) if inputs.symmetry else params.symmetry,
        seed=params.seed,
        angles_from=params.angles_from,
        known_shifts_px=known_shifts,
    )
    with_map = [c for c in summary["class_name"] if c in maps]
    if volumes.ndim == 4 and with_map:  # 3-D: is the decoder a model of each class's shape?
        model = load_model(inputs.model)[0]
        decoded = decoded_class_means(model, latents, with_map)
        target = np.stack([maps[c] for c in with_map])
        shapes = shape_agreement(decoded, target, with_map, params.shape_rotations, params.seed)
        summary = summary.merge(shapes, on="class_name", how="left")
    write_stack(out.stack, volumes, voxel)
    with atomic_path(out.table) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    plot_average_fsc(out.figure, curves, voxel, params.angles_from)
