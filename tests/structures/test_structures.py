"""Structures: ID validation, atom selection on a hand-written PDB, and the real download code
against a loopback HTTP server that serves the archive's URL layout."""

from __future__ import annotations

import functools
import gzip
import http.server
import re
import socket
import threading
from pathlib import Path

import gemmi
import numpy as np
import pytest

from cryoavae.core.errors import InputError
from cryoavae.structures import (
    AtomSelection,
    FetchConfig,
    fetch_structure,
    import_structure_file,
    load_atoms,
    normalize_pdb_id,
)


def _atom(serial, name, res, chain, seq, xyz, element, het=False):
    record = "HETATM" if het else "ATOM"
    x, y, z = xyz
    return (
        f"{record:<6}{serial:>5} {name:<4} {res:>3} {chain}{seq:>4}    "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{20.0:6.2f}          {element:>2}"
    )


def _biomt(op, shift_x):
    rows = []
    for k in range(3):
        r = [0.0, 0.0, 0.0]
        r[k] = 1.0
        t = shift_x if k == 0 else 0.0
        rows.append(
            f"REMARK 350   BIOMT{k + 1}{op:>4}{r[0]:10.6f}{r[1]:10.6f}{r[2]:10.6f}{t:15.5f}"
        )
    return rows


def _tiny_pdb() -> str:
    """Chain A: ALA 1, ALA 2 (N CA C O CB + 1 H each); chain B: GLY 1 (N CA C O);
    HETATM: acetate (4 heavy atoms), a calcium ion named CA, a sodium ion, two waters.
    Assembly 1: chains A and B, identity plus a copy shifted 50 Å along x."""
    lines = [
        "HEADER    TEST                                    01-JAN-00   1ABC",
        "REMARK 350 BIOMOLECULE: 1",
        "REMARK 350 APPLY THE FOLLOWING TO CHAINS: A, B",
        *_biomt(1, 0.0),
        *_biomt(2, 50.0),
    ]
    atoms = []
    for seq, base in ((1, 0.0), (2, 3.8)):
        atoms += [
            (" N  ", "ALA", "A", seq, (base - 1.2, 0.5, 0.0), "N"),
            (" CA ", "ALA", "A", seq, (base, 0.0, 0.0), "C"),
            (" C  ", "ALA", "A", seq, (base + 1.2, 0.6, 0.0), "C"),
            (" O  ", "ALA", "A", seq, (base + 1.3, 1.8, 0.0), "O"),
            (" CB ", "ALA", "A", seq, (base, -1.5, 0.3), "C"),
            (" HA ", "ALA", "A", seq, (base, 0.3, 1.0), "H"),
        ]
    atoms += [
        (" N  ", "GLY", "B", 1, (10.0, 0.5, 0.0), "N"),
        (" CA ", "GLY", "B", 1, (11.0, 0.0, 0.0), "C"),
        (" C  ", "GLY", "B", 1, (12.2, 0.6, 0.0), "C"),
        (" O  ", "GLY", "B", 1, (12.3, 1.8, 0.0), "O"),
    ]
    het = [
        (" C  ", "ACT", "A", 101, (5.0, 5.0, 5.0), "C"),
        (" O  ", "ACT", "A", 101, (5.0, 6.2, 5.0), "O"),
        (" OXT", "ACT", "A", 101, (6.0, 4.5, 5.0), "O"),
        (" CH3", "ACT", "A", 101, (3.6, 4.4, 5.0), "C"),
        ("CA  ", " CA", "A", 102, (8.0, 8.0, 8.0), "CA"),
        ("NA  ", " NA", "A", 103, (9.0, 8.0, 8.0), "NA"),
        (" O  ", "HOH", "A", 201, (20.0, 0.0, 0.0), "O"),
        (" O  ", "HOH", "B", 202, (21.0, 0.0, 0.0), "O"),
    ]
    serial = 1
    for name, res, chain, seq, xyz, el in atoms:
        lines.append(_atom(serial, name, res, chain, seq, xyz, el))
        serial += 1
    for name, res, chain, seq, xyz, el in het:
        lines.append(_atom(serial, name, res.strip(), chain, seq, xyz, el, het=True))
        serial += 1
    lines.append("END")
    return "\n".join(lines) + "\n"


CALPHA_POSITIONS = np.array([[0.0, 0.0, 0.0], [3.8, 0.0, 0.0], [11.0, 0.0, 0.0]])


@pytest.fixture
def tiny_pdb(tmp_path) -> Path:
    path = tmp_path / "tiny.pdb"
    path.write_text(_tiny_pdb())
    return path


def _tiny_cif_gz() -> bytes:
    st = gemmi.read_pdb_string(_tiny_pdb())
    st.setup_entities()
    return gzip.compress(st.make_mmcif_document().as_string().encode())


# --- IDs -------------------------------------------------------------------------------------


def test_pdb_ids_are_case_folded():
    assert normalize_pdb_id("1BXN") == "1bxn"
    assert normalize_pdb_id("3h84") == "3h84"


@pytest.mark.parametrize("bad", ["../x", "1ab", "abcd", "1abcd", "1ab/", "1a c", "", "1bx\n"])
def test_invalid_pdb_ids_are_refused(bad):
    with pytest.raises(InputError, match=r"structures\.ids: .* is not a PDB ID"):
        normalize_pdb_id(bad)


def test_non_string_id_is_refused():
    with pytest.raises(InputError, match="1234"):
        normalize_pdb_id(1234)


# --- atom selection --------------------------------------------------------------------------


def test_heavy_atoms_drop_hydrogens_waters_and_ions(tiny_pdb):
    atoms = load_atoms(tiny_pdb, AtomSelection())
    # 2 x (N CA C O CB) + GLY (4) + acetate (4); no H, no Ca/Na ions, no waters.
    assert len(atoms) == 18
    assert atoms.positions.shape == (18, 3) and atoms.positions.dtype == np.float64
    assert set(atoms.elements.tolist()) == {"C", "N", "O"}
    assert (atoms.atomic_numbers[atoms.elements == "O"] == 8).all()


def test_waters_ions_and_hydrogens_on_request(tiny_pdb):
    assert len(load_atoms(tiny_pdb, AtomSelection(keep_waters=True))) == 20
    with_ions = load_atoms(tiny_pdb, AtomSelection(keep_ions=True))
    assert len(with_ions) == 20
    assert {"Ca", "Na"} <= set(with_ions.elements.tolist())
    assert len(load_atoms(tiny_pdb, AtomSelection(atoms="all"))) == 20


def test_calpha_takes_one_carbon_per_residue_not_calcium(tiny_pdb):
    atoms = load_atoms(tiny_pdb, AtomSelection(atoms="calpha", keep_ions=True))
    np.testing.assert_allclose(atoms.positions, CALPHA_POSITIONS)
    assert atoms.elements.tolist() == ["C", "C", "C"]


def test_chain_selection(tiny_pdb):
    atoms = load_atoms(tiny_pdb, AtomSelection(atoms="calpha", chains=("B",)))
    np.testing.assert_allclose(atoms.positions, CALPHA_POSITIONS[2:])
    with pytest.raises(InputError, match=r"structures\.chains: \['Z'\].*chains there: A, B"):
        load_atoms(tiny_pdb, AtomSelection(chains=("Z",)))


def test_biological_assembly(tiny_pdb):
    atoms = load_atoms(tiny_pdb, AtomSelection(atoms="calpha", assembly="1"))
    expected = np.concatenate([CALPHA_POSITIONS, CALPHA_POSITIONS + [50.0, 0.0, 0.0]])
    got = atoms.positions[np.lexsort(atoms.positions.T[::-1])]
    np.testing.assert_allclose(got, expected[np.lexsort(expected.T[::-1])], atol=1e-3)
    with pytest.raises(InputError, match=r"structures\.assembly: '7'.*assemblies there: 1"):
        load_atoms(tiny_pdb, AtomSelection(assembly="7"))


def test_unknown_atom_choice_and_empty_selection(tiny_pdb, tmp_path):
    with pytest.raises(InputError, match=r"structures\.atoms = 'backbone' is invalid"):
        load_atoms(tiny_pdb, AtomSelection(atoms="backbone"))
    water_only = tmp_path / "water.pdb"
    water_only.write_text(_atom(1, " O  ", "HOH", "A", 1, (0, 0, 0), "O", het=True) + "\nEND\n")
    with pytest.raises(InputError, match="no atoms left after selection"):
        load_atoms(water_only, AtomSelection())


# --- import and resources --------------------------------------------------------------------


def test_import_converts_pdb_to_mmcif_with_assembly(tiny_pdb, tmp_path):
    dest = tmp_path / "out" / "mine.cif.gz"
    import_structure_file(tiny_pdb, dest)
    text = gzip.decompress(dest.read_bytes()).decode()
    assert text.startswith("data_") and "_pdbx_struct_assembly_gen" in text
    for sel in (AtomSelection(), AtomSelection(atoms="calpha", assembly="1")):
        np.testing.assert_allclose(
            load_atoms(dest, sel).positions, load_atoms(tiny_pdb, sel).positions, atol=1e-3
        )


def test_import_refuses_unreadable_files(tmp_path):
    dest = tmp_path / "x.cif.gz"
    junk = tmp_path / "junk.pdb"
    junk.write_text("this is not a structure\n")
    with pytest.raises(InputError, match=r"junk\.pdb: no atoms found"):
        import_structure_file(junk, dest)
    with pytest.raises(InputError, match="does not exist"):
        import_structure_file(tmp_path / "missing.pdb", dest)
    assert list(tmp_path.iterdir()) == [junk]


def test_resources_are_used_first(tiny_pdb, tmp_path):
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "1abc.pdb.gz").write_bytes(gzip.compress(tiny_pdb.read_bytes()))
    dest = tmp_path / "out" / "1abc.cif.gz"
    config = FetchConfig(archive_url="http://127.0.0.1:9/nowhere", offline=False, retries=0)
    fetch_structure("1ABC", dest, resources_dir=resources, config=config)
    assert len(load_atoms(dest, AtomSelection())) == 18


def test_corrupt_resource_names_the_file(tmp_path):
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "1abc.cif.gz").write_bytes(_tiny_cif_gz()[:200])
    dest = tmp_path / "1abc.cif.gz"
    with pytest.raises(InputError, match=r"1abc\.cif\.gz: corrupt or truncated gzip"):
        fetch_structure("1abc", dest, resources_dir=resources, config=FetchConfig(offline=True))
    assert not dest.exists()


def test_offline_uses_cache_or_says_where_it_looked(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dest = tmp_path / "1abc.cif.gz"
    config = FetchConfig(cache_dir=str(cache), offline=True)
    with pytest.raises(InputError, match=r"structures\.offline is true and PDB ID 1ABC"):
        fetch_structure("1abc", dest, resources_dir=None, config=config)
    (cache / "1abc.cif.gz").write_bytes(_tiny_cif_gz())
    fetch_structure("1abc", dest, resources_dir=None, config=config)
    assert dest.read_bytes() == (cache / "1abc.cif.gz").read_bytes()


# --- loopback archive ------------------------------------------------------------------------


class _Archive(http.server.SimpleHTTPRequestHandler):
    fail_first: set[str] = set()

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path in self.fail_first:
            self.fail_first.discard(self.path)
            self.send_error(503, "busy")
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def archive(tmp_path):
    """(base URL, folder served) of a loopback server with the archive's layout."""
    root = tmp_path / "archive"
    root.mkdir()
    handler = functools.partial(_Archive, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/download", root
    server.shutdown()
    server.server_close()


def _serve(root: Path, name: str, data: bytes) -> None:
    (root / "download").mkdir(exist_ok=True)
    (root / "download" / name).write_bytes(data)


def test_download_stores_cache_and_output(archive, tmp_path):
    url, root = archive
    _serve(root, "1ABC.cif.gz", _tiny_cif_gz())
    cache, dest = tmp_path / "cache", tmp_path / "out" / "1abc.cif.gz"
    fetch_structure("1abc", dest, resources_dir=None, config=FetchConfig(url, str(cache)))
    assert dest.read_bytes() == (cache / "1abc.cif.gz").read_bytes()
    assert len(load_atoms(dest, AtomSelection())) == 18
    # Second time: from the cache, even with the archive gone.
    (root / "download" / "1ABC.cif.gz").unlink()
    dest.unlink()
    fetch_structure("1abc", dest, resources_dir=None, config=FetchConfig(url, str(cache)))
    assert dest.exists()


def test_download_falls_back_to_pdb_format_and_retries(archive, tmp_path):
    url, root = archive
    _serve(root, "2ABC.pdb.gz", gzip.compress(_tiny_pdb().encode()))
    _Archive.fail_first = {"/download/2ABC.pdb.gz"}
    dest = tmp_path / "2abc.cif.gz"
    fetch_structure("2abc", dest, resources_dir=None, config=FetchConfig(url, retries=1))
    assert gzip.decompress(dest.read_bytes()).startswith(b"data_")
    assert _Archive.fail_first == set()


def test_missing_id_is_a_clear_error(archive, tmp_path):
    url, _ = archive
    with pytest.raises(InputError, match=rf"PDB ID 9ZZZ not found at {url}/9ZZZ\.cif\.gz"):
        fetch_structure(
            "9zzz", tmp_path / "9zzz.cif.gz", resources_dir=None, config=FetchConfig(url)
        )


def test_truncated_download_leaves_nothing_behind(archive, tmp_path):
    url, root = archive
    _serve(root, "3ABC.cif.gz", _tiny_cif_gz()[:300])
    cache, out = tmp_path / "cache", tmp_path / "out"
    cache.mkdir()
    out.mkdir()
    with pytest.raises(InputError, match=r"3ABC\.cif\.gz: corrupt or truncated gzip"):
        fetch_structure(
            "3abc", out / "3abc.cif.gz", resources_dir=None, config=FetchConfig(url, str(cache))
        )
    assert list(cache.iterdir()) == [] and list(out.iterdir()) == []


def test_silent_server_times_out(tmp_path):
    # Accepts connections (kernel backlog) but never answers.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/download"
    raised: list[BaseException] = []

    def fetch() -> None:
        try:
            fetch_structure(
                "1abc",
                tmp_path / "1abc.cif.gz",
                resources_dir=None,
                config=FetchConfig(url, timeout_s=0.2, retries=1),
            )
        except BaseException as error:  # handed to the test's thread
            raised.append(error)

    # a fetch that ignored its timeout would wait on the silent server for ever: the test waits
    # a minute for it (far beyond two tries of 0.2 s on any machine), then fails instead of hanging
    worker = threading.Thread(target=fetch, daemon=True)
    try:
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "fetch_structure still waiting on a silent server after 60 s"
    finally:
        silent.close()
    assert len(raised) == 1 and isinstance(raised[0], InputError), raised
    assert re.search(r"could not download .*no answer within 0\.2 s", str(raised[0]))
    assert not (tmp_path / "1abc.cif.gz").exists()


def _three_atoms_as(fmt: str, bad_x: str) -> bytes:
    """Three CA atoms, the second's x written as ``bad_x``, as a PDB or mmCIF file's bytes."""
    lines = [_atom(k, "CA", "ALA", "A", k, (3.8 * k, 0.0, 0.0), "C") for k in (1, 2, 3)]
    pdb = "\n".join(lines) + "\nEND\n"
    if fmt == "pdb":
        return pdb.replace("   7.600", f"{bad_x:>8}", 1).encode()
    st = gemmi.read_pdb_string(pdb)
    st.setup_entities()
    text = st.make_mmcif_document().as_string()
    row = next(line for line in text.splitlines() if line.startswith("ATOM 2 "))
    assert " 7.6 " in row
    return text.replace(row, row.replace(" 7.6 ", f" {bad_x} ", 1)).encode()


@pytest.mark.parametrize("bad_x", ["nan", "inf"])
@pytest.mark.parametrize("name", ["mine.pdb", "mine.cif", "mine.cif.gz"])
def test_a_users_file_with_a_nan_coordinate_is_refused_at_import_naming_it(tmp_path, name, bad_x):
    """Refused where the user's own file is named, before a copy of it reaches results/."""
    mine = tmp_path / name

    def write(x: str) -> None:
        raw = _three_atoms_as("pdb" if name.endswith(".pdb") else "cif", x)
        mine.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)

    write(bad_x)
    dest = tmp_path / "results" / "mine.cif.gz"
    with pytest.raises(InputError) as info:
        import_structure_file(mine, dest)
    message = str(info.value)
    assert message.startswith(f"{mine}: atom 2 has a coordinate that is not a finite number")
    assert "\n" not in message
    assert not dest.parent.exists() or not any(dest.parent.iterdir())  # no copy, no temporary
    # the same file with a number there is imported: only the coordinate was refused
    write("7.6")
    import_structure_file(mine, dest)
    assert gemmi.read_structure(str(dest))[0].count_atom_sites() == 3


@pytest.mark.parametrize("field", ["        ", "   abc  ", "     ?  "])
@pytest.mark.parametrize(("axis", "columns"), [("x", (31, 38)), ("y", (39, 46)), ("z", (47, 54))])
@pytest.mark.parametrize("name", ["mine.pdb", "mine.pdb.gz"])
def test_a_users_pdb_file_with_a_blank_or_non_numeric_coordinate_is_refused_naming_the_line(
    tmp_path, name, axis, columns, field
):
    """gemmi reads such a field as 0 (an atom at the origin); refused naming the user's file, the
    line and the atom, before a copy of it reaches results/."""
    mine = tmp_path / name
    first, last = columns

    def write(value: str) -> None:
        atoms = [_atom(k, "CA", "ALA", "A", k, (3.8 * k, 1.5, -2.25), "C") for k in (1, 2, 3)]
        atoms[1] = atoms[1][: first - 1] + value + atoms[1][last:]
        raw = "\n".join(["HEADER    TEST", *atoms, "END", ""]).encode()
        mine.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)

    write(field)
    dest = tmp_path / "results" / "mine.cif.gz"
    with pytest.raises(InputError) as info:
        import_structure_file(mine, dest)
    message = str(info.value)
    assert message.startswith(
        f"{mine}: line 3: the {axis} coordinate (columns {first}-{last}) of atom 'CA' of residue "
        f"ALA 2 (chain 'A') is {field!r}, not a number (1 such lines)"
    )
    assert "must be numbers" in message and "\n" not in message
    assert not dest.parent.exists() or not any(dest.parent.iterdir())  # no copy, no temporary
    # the same file with a number there is imported, with that atom where the file puts it
    write(f"{42.5:8.3f}")
    import_structure_file(mine, dest)
    model = gemmi.read_structure(str(dest))[0]
    assert model.count_atom_sites() == 3
    expected = [42.5 if a == axis else v for a, v in zip("xyz", (7.6, 1.5, -2.25), strict=True)]
    assert model["A"][1]["CA"][0].pos.tolist() == pytest.approx(expected)
