"""Particles: the contract between the pipeline's stages.

Every source of particles (simulation, extraction from tomograms, the 2-D character set, the
original Affinity-VAE folder layout, a user's STAR file) writes the same thing: ``.mrcs`` stacks
with the voxel size in their headers and a STAR table whose rows point into them. Everything
downstream reads only this, so it does not care where the particles came from.

- :mod:`.table`: the table's columns, image references, splits, class names, merging, STAR I/O;
- :mod:`.stacks`: writing and opening stacks;
- :mod:`.images`: reading a table's images a batch at a time;
- :mod:`.positions`: where a particle cut out of a tomogram sits in it (RELION 5's columns).
"""

from cryoavae.particles.images import ParticleImages, table_voxel_size
from cryoavae.particles.positions import (
    BOX_CENTRES,
    pick_from_box_centre,
    positions_in,
    recorded_offsets_px,
    tomogram_name,
)
from cryoavae.particles.stacks import (
    StackLayout,
    StackWriter,
    open_stack,
    stack_layout,
    stack_voxel_size,
    stack_writer,
    write_stack,
)
from cryoavae.particles.table import (
    ANGLES,
    CLASS_NAME,
    CLASS_NUMBER,
    DEFOCUS,
    IMAGE,
    ORIGINS,
    RECENTRE,
    REQUIRED_COLUMNS,
    SHARD,
    SNR,
    SPLIT,
    SPLITS,
    VOXEL_SIZE,
    assign_splits,
    class_counts,
    class_lookup,
    defocus_um,
    image_reference,
    merge_particle_tables,
    parse_image_references,
    particle_table,
    read_particle_table,
    read_star_blocks,
    read_star_particles,
    resolve_classes,
    split_image_reference,
    split_image_references,
    stack_reference,
    val_count,
    write_particle_table,
    write_star_blocks,
)

__all__ = [
    "ANGLES",
    "BOX_CENTRES",
    "CLASS_NAME",
    "CLASS_NUMBER",
    "DEFOCUS",
    "IMAGE",
    "ORIGINS",
    "RECENTRE",
    "REQUIRED_COLUMNS",
    "SHARD",
    "SNR",
    "SPLIT",
    "SPLITS",
    "VOXEL_SIZE",
    "ParticleImages",
    "StackLayout",
    "StackWriter",
    "assign_splits",
    "class_counts",
    "class_lookup",
    "defocus_um",
    "image_reference",
    "merge_particle_tables",
    "open_stack",
    "parse_image_references",
    "particle_table",
    "pick_from_box_centre",
    "positions_in",
    "recorded_offsets_px",
    "tomogram_name",
    "read_particle_table",
    "read_star_blocks",
    "read_star_particles",
    "resolve_classes",
    "split_image_reference",
    "split_image_references",
    "stack_layout",
    "stack_reference",
    "stack_voxel_size",
    "stack_writer",
    "table_voxel_size",
    "val_count",
    "write_particle_table",
    "write_stack",
    "write_star_blocks",
]
