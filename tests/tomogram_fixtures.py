"""Small density maps for the tomogram tests (built once per session from the bundled PDBs)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from cryoavae.structures import AtomSelection, load_atoms
from cryoavae.structures.density import DensityConfig, atoms_to_density

PDB = Path(__file__).resolve().parents[1] / "resources" / "pdb"


@functools.cache
def density_map(pdb_id: str, voxel_size_angstrom: float = 10.0, box_size_px: int = 32):
    """The class map of a bundled structure, ``(d, d, d)`` float32 (read-only)."""
    config = DensityConfig(
        voxel_size_angstrom=voxel_size_angstrom,
        box_size_px=box_size_px,
        resolution_angstrom=2 * voxel_size_angstrom,
    )
    atoms = load_atoms(PDB / f"{pdb_id}.pdb.gz", AtomSelection())
    volume = atoms_to_density(atoms, config, name=pdb_id)
    volume.flags.writeable = False
    return volume


def maps(*pdb_ids: str, **kwargs) -> np.ndarray:
    return np.stack([density_map(p, **kwargs) for p in pdb_ids])
