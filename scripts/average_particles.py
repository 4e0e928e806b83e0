"""Rule average_particles: per seen class, the subtomogram average from the model's orientations
(and from the true ones when known), its FSC with the class's map, as MRC, TSV and a figure."""

from cryoavae.atomic import atomic_path
from cryoavae.density import read_map
from cryoavae.evaluate.averages import average_classes
from cryoavae.latents import read_latents
from cryoavae.particles import ParticleImages, read_particle_table, table_voxel_size, write_stack
from cryoavae.report.average_figures import plot_average_fsc
from cryoavae.runlog import rule_logging

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
with rule_logging(snakemake.log[0], rule="average_particles", variant=snakemake.wildcards.variant):
    table = read_particle_table(inputs.particles)
    voxel = table_voxel_size(table, inputs.particles)
    maps = {
        name: read_map(path)[0] for name, path in zip(params.structures, inputs.maps, strict=True)
    }
    volumes, summary, curves = average_classes(
        read_latents(inputs.latents),
        ParticleImages(table, inputs.particles),
        params.class_names,
        maps,
        voxel,
        params.wedge_tilt_max_deg,
        params.symmetry,
        seed=params.seed,
    )
    write_stack(out.stack, volumes, voxel)
    with atomic_path(out.table) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    plot_average_fsc(out.figure, curves, voxel)
