"""MD-style PDB files (no element column, left-aligned names, HT1 hydrogens, segment IDs instead of
chains): elements from atom names in their residues, the same atoms, map and prior as the
standard file, and one clear line for what stays ambiguous."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest

from cryoavae import affinity as af
from cryoavae.core.errors import InputError
from cryoavae.structures import AtomSelection, import_structure_file, load_atoms
from cryoavae.structures.density import DensityConfig, atoms_to_density
from cryoavae.structures.elements import element_from_name

# Residues as CHARMM names them (HSD: neutral histidine, absent from the PDB's dictionary). Names
# that gemmi reads as other elements from columns 13-14 when left-aligned: CA (calcium), HG1
# (mercury), CD2 (cadmium), NE2 (neon), HE1 (helium), CE (cerium), OG (oganesson).
RESIDUES = {
    "ALA": ["N", "HN", "CA", "HA", "CB", "HB1", "HB2", "HB3", "C", "O"],
    "SER": ["N", "HN", "CA", "HA", "CB", "OG", "HG1", "C", "O"],
    "MET": ["N", "HN", "CA", "HA", "CB", "CG", "SD", "CE", "HE1", "C", "O"],
    "HSD": ["N", "HN", "CA", "CB", "CG", "ND1", "HD1", "CD2", "CE1", "HE1", "NE2", "C", "O"],
    "LYS": ["N", "HN", "CA", "CB", "CG", "CD", "CE", "NZ", "HZ1", "C", "O"],
}
SEGMENTS = {"PROA": ["ALA", "SER", "MET"], "PROB": ["HSD", "LYS", "ALA"]}


def _atoms():
    """(segment, chain, residue, number, name, element, xyz) of a small two-segment model with
    N-terminal HT1-HT3, C-terminal OT1/OT2 and one sodium ion (CHARMM's SOD)."""
    rng = np.random.default_rng(5)
    rows = []
    for chain, (segment, residues) in zip("AB", SEGMENTS.items(), strict=True):
        for number, residue in enumerate(residues, start=1):
            names = list(RESIDUES[residue])
            if number == 1:
                names = ["N", "HT1", "HT2", "HT3", *names[2:]]
            if number == len(residues):
                names = [*names[:-1], "OT1", "OT2"]
            for name in names:
                xyz = rng.normal(0.0, 6.0, 3) + [8.0 * number, 20.0 * (chain == "B"), 0.0]
                rows.append((segment, chain, residue, number, name, name[0], xyz))
    rows.append(("IONS", "C", "SOD", 1, "SOD", "Na", np.array([30.0, 30.0, 30.0])))
    return rows


def _md_pdb() -> str:
    """As CHARMM/NAMD write it: names from column 13, blank chain IDs, segment IDs in 73-76, no
    element column."""
    lines = []
    for serial, (segment, _, residue, number, name, _, (x, y, z)) in enumerate(_atoms(), 1):
        lines.append(
            f"ATOM  {serial:>5} {name:<4} {residue:>3}  {number:>4}    "
            f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{0.0:6.2f}      {segment:<4}"
        )
    return "\n".join([*lines, "END"]) + "\n"


def _standard_pdb() -> str:
    """The same atoms as the archive writes them: aligned names, chain IDs, elements."""
    lines = []
    for serial, (_, chain, residue, number, name, element, (x, y, z)) in enumerate(_atoms(), 1):
        ion = residue == "SOD"
        record, residue, name = ("HETATM", " NA", "NA") if ion else ("ATOM", residue, name)
        padded = f"{name:<4}" if len(element) == 2 or len(name) == 4 else f" {name:<3}"
        lines.append(
            f"{record:<6}{serial:>5} {padded} {residue:>3} {chain}{number:>4}    "
            f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{0.0:6.2f}          {element.upper():>2}"
        )
    return "\n".join([*lines, "END"]) + "\n"


@pytest.fixture
def pdb_pair(tmp_path):
    md, standard = tmp_path / "md.pdb", tmp_path / "standard.pdb"
    md.write_text(_md_pdb())
    standard.write_text(_standard_pdb())
    return md, standard


@pytest.mark.parametrize(
    "residue, atom, kwargs, expected",
    [
        ("ALA", "CA", {}, "C"),
        ("ALA", "HT1", {}, "H"),
        ("ALA", "1HB", {}, "H"),
        ("SER", "HG1", {}, "H"),
        ("MET", "SD", {}, "S"),
        ("MSE", "SE", {}, "Se"),
        ("HSD", "NE2", {"polymer": True}, "N"),
        ("HSD", "CD2", {"polymer": True}, "C"),
        ("HOH", "OH2", {}, "O"),
        ("TIP", "H1", {}, "H"),
        ("SOD", "SOD", {"single_atom": True}, "Na"),
        ("CLA", "CLA", {"single_atom": True}, "Cl"),
        ("CA", "CA", {"single_atom": True}, "Ca"),
        ("ZN", "ZN", {"single_atom": True}, "Zn"),
        ("LIG", "C12", {}, "C"),
        ("LIG", "HE1", {}, "H"),
        ("LIG", "OG", {}, "O"),
        ("LIG", "CL1", {}, ("C", "Cl")),
        ("LIG", "HG", {}, ("H", "Hg")),
        ("LIG", "123", {}, ()),
    ],
)
def test_element_from_the_name_in_its_residue(residue, atom, kwargs, expected):
    assert element_from_name(residue, atom, **kwargs) == expected


def test_md_style_pdb_reads_like_the_standard_file(pdb_pair, caplog, tmp_path):
    md, standard = pdb_pair
    with caplog.at_level(logging.WARNING, logger="cryoavae.structures.elements"):
        for selection in (
            AtomSelection(),
            AtomSelection(atoms="all", keep_ions=True),
            AtomSelection(atoms="calpha"),
        ):
            got, want = load_atoms(md, selection), load_atoms(standard, selection)
            assert got.elements.tolist() == want.elements.tolist()
            np.testing.assert_array_equal(got.atomic_numbers, want.atomic_numbers)
            np.testing.assert_allclose(got.positions, want.positions, atol=1e-3)
    assert "md.pdb has no element column: elements taken from the atom names" in caplog.text
    assert "chains named after the segment IDs (PROA, PROB, IONS)" in caplog.text
    everything = load_atoms(md, AtomSelection(atoms="all", keep_ions=True))
    assert set(everything.elements.tolist()) == {"H", "C", "N", "O", "S", "Na"}
    assert len(load_atoms(md, AtomSelection(atoms="calpha"))) == 6

    # The segments are the chains now, for selection and through the stored mmCIF.
    only_b = load_atoms(md, AtomSelection(atoms="calpha", chains=("PROB",)))
    np.testing.assert_allclose(
        only_b.positions,
        load_atoms(standard, AtomSelection(atoms="calpha", chains=("B",))).positions,
        atol=1e-3,
    )
    stored = tmp_path / "md.cif.gz"
    import_structure_file(md, stored)
    assert b"PROA" in gzip.decompress(stored.read_bytes())
    heavy = load_atoms(stored, AtomSelection())
    assert heavy.elements.tolist() == load_atoms(standard, AtomSelection()).elements.tolist()

    # The density map matches the standard file's (no calcium where the C-alphas are).
    maps = [
        atoms_to_density(load_atoms(p, AtomSelection()), DensityConfig(box_size_px=16))
        for p in (md, standard, stored)
    ]
    np.testing.assert_allclose(maps[0], maps[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[2], maps[1], rtol=1e-4, atol=1e-5)

    # And the prior computes from it.
    calpha = [load_atoms(p, AtomSelection(atoms="calpha")) for p in (md, standard)]
    calpha.append(load_atoms(md, AtomSelection(atoms="calpha", chains=("PROA",))))
    a, _ = af.build_affinity(af.soap_similarity(calpha, af.SoapConfig()))
    assert np.all(np.isfinite(a)) and a[0, 1] == pytest.approx(1.0, abs=1e-6) and a[0, 2] < 1


def test_ambiguous_or_partial_elements_are_refused_in_one_line(pdb_pair, tmp_path):
    md, _ = pdb_pair
    ligand = (
        f"HETATM  999 CL1  LIG  {1:>4}    {1.0:8.3f}{2.0:8.3f}{3.0:8.3f}{1.0:6.2f}{0.0:6.2f}"
        "      LIGA"
    )
    bad = tmp_path / "ligand.pdb"
    bad.write_text(md.read_text().replace("END\n", ligand + "\nEND\n"))
    with pytest.raises(InputError, match=r"ligand\.pdb: no element column, and atom 'CL1'") as err:
        load_atoms(bad, AtomSelection())
    assert "C or Cl" in str(err.value) and "columns 77-78" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"ligand\.pdb: no element column"):
        import_structure_file(bad, tmp_path / "out.cif.gz")
    assert not (tmp_path / "out.cif.gz").exists()

    lines = md.read_text().splitlines()
    lines[0] = f"{lines[0]:<76} N"
    partial = tmp_path / "partial.pdb"
    partial.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"partial\.pdb: the element column .* filled for 1 atoms"):
        load_atoms(partial, AtomSelection())
