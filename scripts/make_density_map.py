"""Rule make_density_map: atoms -> potential map (MRC, voxel size in the header)."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.structures import AtomSelection, load_atoms
from cryoavae.structures.density import DensityConfig, atoms_to_density, write_map

name = snakemake.wildcards.structure
with rule_logging(snakemake.log[0], rule="make_density_map", structure=name):
    selection = AtomSelection(**snakemake.params.selection)
    config = DensityConfig(**snakemake.params.density)
    atoms = load_atoms(Path(snakemake.input[0]), selection)
    volume = atoms_to_density(atoms, config, name=name)
    write_map(snakemake.output[0], volume, config.voxel_size_angstrom)
