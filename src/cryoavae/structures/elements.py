"""PDB files without an element column: models from molecular dynamics, Rosetta, older tools.

Columns 77-78 of a PDB ``ATOM``/``HETATM`` record hold the atom's element. Files written by MD
packages often leave them blank, left-align the atom names (``"CA  "`` instead of ``" CA "``),
name hydrogens ``HT1`` and put segment IDs (columns 73-76) where the chain ID should be. Without
the element column gemmi falls back on the old convention that columns 13-14 hold the element,
which left-aligned names break: ``CA`` becomes calcium, ``HG1`` mercury, ``CD1`` cadmium and
``HT1`` nothing at all, so the C-alpha selection comes out empty and the density map weighs every
C-alpha as a calcium ion.

Here the element comes from the atom name in its residue's context instead (the PDB names its
atoms after their elements, but a name alone can be read two ways):

- amino acids and nucleotides (in gemmi's table of residues, or any residue with a peptide
  backbone N, CA, C or a sugar C1', C4', which covers force-field names such as HSD or CYX) and
  waters hold only H, C, N, O, P and S (Se in selenomethionine and selenocysteine): the first
  letter of the name after any leading digits (``1HB`` -> H, ``HT1`` -> H, ``CA`` -> C,
  ``OT1`` -> O, ``SD`` -> S);
- a residue of one atom is an ion: MD names (``SOD``, ``POT``, ``CLA``, ...) or a residue named
  after its element (``ZN``, ``CA``, ``MG``);
- any other atom: its first letter, or its first two letters if they name an element met in
  biomolecular models; when both read as elements (``CL1``: C or Cl; ``HG1``: H or Hg) the
  element stays ambiguous and the file is refused with one line naming the atom. Elements that
  collide with common atom names but hardly occur in such models (He, Ne, Ce, Ho, Nb, No, ...)
  are never read from a name.

Which files this applies to is decided per file: no element in any atom record. A file that gives
elements for some atoms and not for others is refused (which atoms gemmi guessed cannot be told).
"""

from __future__ import annotations

import logging
from collections import Counter

import gemmi

from cryoavae.core.errors import InputError

log = logging.getLogger(__name__)

# Elements written with one letter, and the two-letter ones that a biomolecular model may hold
# (ions, cofactors, heavy-atom derivatives). Noble gases, most lanthanides and the superheavy
# elements are left out on purpose: they collide with common atom names (HE1, NE2, CE1, HO1, NB).
_ONE_LETTER = frozenset("HDBCNOFPSKVYIWU")
_TWO_LETTER = frozenset(
    "Li Be Na Mg Al Si Cl Ca Ti Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Rb Sr Zr Mo Ru Rh Pd Ag Cd "
    "In Sn Sb Te Cs Ba La Gd Tb Yb Lu Ta Re Os Ir Pt Au Hg Tl Pb Bi".split()
)
# Single-atom ion residues as CHARMM, AMBER and GROMACS force fields name them.
_ION_RESIDUES = {
    "SOD": "Na",
    "NA+": "Na",
    "POT": "K",
    "K+": "K",
    "CLA": "Cl",
    "CL-": "Cl",
    "CAL": "Ca",
    "CES": "Cs",
    "LIT": "Li",
    "RUB": "Rb",
    "BAR": "Ba",
    "ZN2": "Zn",
    "MG2": "Mg",
}
_WATERS = frozenset({"HOH", "WAT", "TIP", "TIP3", "SOL", "SPC", "T3P", "T4P", "H2O", "DOD"})
_POLYMER_ELEMENTS = frozenset("HDCNOPS")
_SELENIUM_RESIDUES = frozenset({"MSE", "SEC"})
_BACKBONES = (frozenset({"N", "CA", "C"}), frozenset({"C1'", "C4'"}), frozenset({"C1*", "C4*"}))


def element_from_name(
    residue: str, atom: str, *, single_atom: bool = False, polymer: bool = False
) -> str | tuple[str, ...]:
    """The element symbol of atom ``atom`` in residue ``residue`` (names as the file has them).

    ``single_atom``: the residue holds this atom only; ``polymer``: the residue has a peptide or
    sugar backbone (amino acids and nucleotides in gemmi's table count anyway). Returns the symbol
    ("C", "Zn"), or a tuple of the readings that remain possible when the name does not decide
    (empty when it names no element).
    """
    residue = residue.strip().upper()
    letters = atom.strip().upper().lstrip("0123456789")
    if not letters or not letters[0].isalpha():
        return ()
    info = gemmi.find_tabulated_residue(residue)
    known = info is not None and info.found()
    if (
        polymer
        or residue in _WATERS
        or (known and (info.is_amino_acid() or info.is_nucleic_acid() or info.is_water()))
    ):
        if residue in _SELENIUM_RESIDUES and letters.startswith("SE"):
            return "Se"
        return letters[0] if letters[0] in _POLYMER_ELEMENTS else ()
    if single_atom:
        if residue in _ION_RESIDUES:
            return _ION_RESIDUES[residue]
        if letters == residue and (letters.title() in _TWO_LETTER or letters in _ONE_LETTER):
            return letters.title()
    one = letters[0] if letters[0] in _ONE_LETTER else None
    two = letters[:2].title() if letters[:2].title() in _TWO_LETTER else None
    if one and two:
        return (one, two)
    return one or two or ()


def _element_fields(text: bytes) -> tuple[int, int, int]:
    """(atoms with an element, atoms without, line number of the first without) in the first
    model's ATOM/HETATM records."""
    given = missing = 0
    first_missing = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(b"ENDMDL"):
            break
        if line.startswith((b"ATOM  ", b"HETATM")):
            if line[76:78].strip():
                given += 1
            else:
                missing += 1
                first_missing = first_missing or number
    return given, missing, first_missing


def repair_pdb_structure(st: gemmi.Structure, text: bytes, label: str) -> None:
    """Give a structure read from PDB text the elements and chains its file left out, in place.

    ``text``: the file's (decompressed) bytes, to see which element fields are blank. Elements are
    inferred (:func:`element_from_name`) only when no atom record has one; chains are named after
    the segment IDs when every chain ID is blank and every residue has a segment ID. Both are
    logged. Files with elements and chain IDs are left alone.

    Raises:
        InputError: elements given for some atoms only; an element that stays ambiguous.
    """
    given, missing, first_missing = _element_fields(text)
    if missing and given:
        raise InputError(
            f"{label}: the element column (77-78) is filled for {given} atoms and blank for "
            f"{missing} (first at line {first_missing}); fill it for every atom or for none"
        )
    if missing:
        counts = _infer_elements(st, label)
        summary = ", ".join(f"{el} {n}" for el, n in counts.most_common())
        log.warning(
            "%s has no element column: elements taken from the atom names in their residues (%s)",
            label,
            summary,
        )
    _chains_from_segments(st, label)


def _infer_elements(st: gemmi.Structure, label: str) -> Counter:
    """Set every atom's element from its name; count the elements of the first model."""
    cache: dict[tuple[str, str, bool, bool], str | tuple[str, ...]] = {}
    counts: Counter = Counter()
    for index, model in enumerate(st):
        for chain in model:
            for res in chain:
                names = {atom.name.strip().upper() for atom in res}
                single = len(res) == 1
                polymer = any(backbone <= names for backbone in _BACKBONES)
                for atom in res:
                    key = (res.name, atom.name, single, polymer)
                    if key not in cache:
                        cache[key] = element_from_name(
                            res.name, atom.name, single_atom=single, polymer=polymer
                        )
                    symbol = cache[key]
                    if isinstance(symbol, tuple):
                        reading = " or ".join(symbol) if symbol else "no element"
                        raise InputError(
                            f"{label}: no element column, and atom {atom.name!r} of residue "
                            f"{res.name} {res.seqid.num} (chain {chain.name!r}, segment "
                            f"{res.segment.strip()!r}) can be read as {reading}; write the "
                            "elements in columns 77-78"
                        )
                    atom.element = gemmi.Element(symbol)
                    if index == 0:
                        counts[symbol] += 1
    return counts


def _chains_from_segments(st: gemmi.Structure, label: str) -> None:
    """Name chains after segment IDs when the file left every chain ID blank (CHARMM, NAMD)."""
    residues = [res for chain in st[0] for res in chain] if len(st) else []
    if not residues or any(chain.name.strip() for model in st for chain in model):
        return
    if not all(res.segment.strip() for model in st for chain in model for res in chain):
        return
    for model in st:
        groups: dict[str, gemmi.Chain] = {}
        for chain in model:
            for res in chain:
                segment = res.segment.strip()
                groups.setdefault(segment, gemmi.Chain(segment)).add_residue(res)
        while len(model):
            del model[0]
        for chain in groups.values():
            model.add_chain(chain)
    log.warning(
        "%s has no chain IDs: chains named after the segment IDs (%s)",
        label,
        ", ".join(chain.name for chain in st[0]),
    )
