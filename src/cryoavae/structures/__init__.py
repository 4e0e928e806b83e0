"""Atomic structures: fetch them from the archive (or resources/cache), import users' own models,
and read the atoms the later stages need.

Every structure the pipeline keeps is a gzipped mmCIF file (``{id}.cif.gz``): the archive's own
format, which carries biological assemblies. mmCIF sources are kept byte for byte (only gzipped);
PDB sources are converted with gemmi, which turns ``REMARK 350`` into mmCIF assembly records.
Every source is parsed before anything is written, so a corrupt or truncated file never reaches
the results folder or the cache.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import re
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from cryoavae import __version__
from cryoavae.core.atomic import atomic_path
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass
from cryoavae.structures.coordinates import (
    refuse_non_finite_coordinates,
    refuse_unreadable_pdb_coordinates,
)
from cryoavae.structures.elements import repair_pdb_structure

__all__ = [
    "AtomArrays",
    "AtomSelection",
    "FetchConfig",
    "fetch_structure",
    "import_structure_file",
    "load_atoms",
    "normalize_pdb_id",
]

log = logging.getLogger(__name__)

_PDB_ID = re.compile(r"[0-9][A-Za-z0-9]{3}")
SECTION = "structures"
FETCH_KEYS = ("archive_url", "cache_dir", "offline", "timeout_s", "retries")
SELECTION_KEYS = ("atoms", "keep_waters", "keep_ions", "assembly", "chains")
_ATOM_CHOICES = ("heavy", "all", "calpha")
# HTTP statuses worth another attempt: the server is busy or briefly broken.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def normalize_pdb_id(value: str) -> str:
    """Return the PDB ID in lower case; refuse anything else (it becomes part of file paths).

    Raises:
        InputError: ``value`` is not 4 alphanumeric characters starting with a digit.
    """
    if not isinstance(value, str) or _PDB_ID.fullmatch(value) is None:
        raise InputError(
            f"structures.ids: {value!r} is not a PDB ID (4 characters, digit first, "
            "letters and digits only, e.g. '1bxn')"
        )
    return value.lower()


class FetchConfig(section_dataclass(SECTION, keys=FETCH_KEYS)):
    """Where structures come from (keys of ``structures``). ``archive_url`` follows the RCSB
    download layout (``{archive_url}/{ID}.cif.gz``); a local mirror with the same layout works
    too."""


def fetch_structure(
    pdb_id: str, dest: Path, *, resources_dir: Path | None, config: FetchConfig
) -> None:
    """Write ``dest`` (gzipped mmCIF) for ``pdb_id``, from the first source that has it.

    Order: ``resources_dir`` (``{id}.cif.gz``, ``{id}.pdb.gz``, ``{id}.cif``, ``{id}.pdb``; lower or
    upper case), then ``config.cache_dir``, then, unless ``config.offline``, the archive
    (``{ID}.cif.gz``, falling back to ``{ID}.pdb.gz``). A download is validated, then stored in
    the cache, then written to ``dest``; nothing is written if validation fails.

    Raises:
        InputError: bad ID; ID not found in the archive; offline and not available locally;
            download failed after ``config.retries`` retries (timeouts, refused connections,
            server errors); a source that is not a readable, non-empty structure.
    """
    pid = normalize_pdb_id(pdb_id)
    dest = Path(dest)

    if resources_dir is not None:
        for name in _local_names(pid):
            candidate = Path(resources_dir) / name
            if candidate.is_file():
                log.info("%s: using bundled %s", pid, candidate)
                _write_bytes(dest, _normalise(candidate.read_bytes(), str(candidate)))
                return

    cached = Path(config.cache_dir) / f"{pid}.cif.gz" if config.cache_dir else None
    if cached is not None and cached.is_file():
        try:
            data = _normalise(cached.read_bytes(), str(cached))
        except InputError as err:
            # The cache is ours and only ever written after validation; a bad file there is
            # damage from outside. Fetch again rather than fail, but say so.
            log.warning("ignoring damaged cache file: %s", err)
        else:
            log.info("%s: using cached %s", pid, cached)
            _write_bytes(dest, data)
            return

    if config.offline:
        raise InputError(
            f"structures.offline is true and PDB ID {pid.upper()} is in neither resources_dir "
            f"{resources_dir} nor cache_dir {config.cache_dir}; put {pid}.cif.gz in one of them "
            "or set structures.offline: false"
        )

    base = config.archive_url.rstrip("/")
    urls = [f"{base}/{pid.upper()}.cif.gz", f"{base}/{pid.upper()}.pdb.gz"]
    for url in urls:
        raw = _download(url, timeout_s=config.timeout_s, retries=config.retries)
        if raw is None:
            log.info("%s: not at %s", pid, url)
            continue
        data = _normalise(raw, url)
        if cached is not None:
            _write_bytes(cached, data)
        _write_bytes(dest, data)
        log.info("%s: downloaded %s (%d bytes)", pid, url, len(raw))
        return
    raise InputError(f"PDB ID {pid.upper()} not found at {urls[0]} (nor {urls[1]})")


def import_structure_file(path: Path, dest: Path) -> None:
    """Normalise a user's own model (PDB or mmCIF, gzipped or not) to gzipped mmCIF at ``dest``.

    Raises:
        InputError: the file is missing, corrupt, not a structure, or has no atoms.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"structures.files: {path} does not exist or is not a file")
    _write_bytes(Path(dest), _normalise(path.read_bytes(), str(path)))


class AtomSelection(section_dataclass(SECTION, keys=SELECTION_KEYS)):
    """Which atoms of a structure to use.

    ``atoms``: ``"heavy"`` (no hydrogens), ``"all"``, or ``"calpha"`` (one pseudo-atom per amino
    acid). An *ion* is a non-polymer residue with a single non-hydrogen atom (metals, halides).
    ``assembly``: biological assembly name as the file gives it (usually "1"), None for the
    asymmetric unit. ``chains``: author chain names of the asymmetric unit, applied before the
    assembly is built (copies of a kept chain are kept).
    """

    def __post_init__(self):
        # YAML gives lists; an empty list means "no selection", like None.
        if self.chains is not None:
            object.__setattr__(self, "chains", tuple(self.chains) or None)
        super().__post_init__()


@dataclass(frozen=True, eq=False)
class AtomArrays:
    """Atoms of one structure (first model).

    positions: (n, 3) float64, Å, in the file's frame. atomic_numbers: (n,) int64.
    elements: (n,) str, capitalised symbols ("C", "Pt").
    """

    positions: np.ndarray
    atomic_numbers: np.ndarray
    elements: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.shape[0])


def load_atoms(path: Path, selection: AtomSelection) -> AtomArrays:
    """Read the selected atoms of the first model of ``path`` (PDB or mmCIF, gzip allowed).

    Alternative conformations: the first is kept. Atoms of unknown element are dropped. A PDB
    file without an element column gets its elements from the atom names (see
    :mod:`cryoavae.structures.elements`).

    Raises:
        InputError: unreadable file; unknown ``atoms`` choice, chain or assembly; nothing selected.
    """
    path = Path(path)
    if selection.atoms not in _ATOM_CHOICES:
        raise InputError(
            f"structures.atoms: {selection.atoms!r} is not one of {', '.join(_ATOM_CHOICES)}"
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: not a readable PDB/mmCIF file ({err})") from err
    st = _parse(raw, str(path))
    if len(st) == 0:
        raise InputError(f"{path}: contains no models")
    st.setup_entities()
    st.remove_alternative_conformations()
    model = st[0]

    if selection.chains is not None:
        present = [ch.name for ch in model]
        unknown = sorted(set(selection.chains) - set(present))
        if unknown:
            raise InputError(
                f"structures.chains: {unknown} not in {path} (chains there: "
                f"{', '.join(dict.fromkeys(present))})"
            )
        for name in dict.fromkeys(present):
            if name not in selection.chains:
                model.remove_chain(name)

    if selection.assembly is not None:
        by_name = {a.name: a for a in st.assemblies}
        if str(selection.assembly) not in by_name:
            raise InputError(
                f"structures.assembly: {selection.assembly!r} not in {path} (assemblies there: "
                f"{', '.join(by_name) or 'none'})"
            )
        model = gemmi.make_assembly(
            by_name[str(selection.assembly)], model, gemmi.HowToNameCopiedChain.AddNumber
        )

    positions: list[tuple[float, float, float]] = []
    numbers: list[int] = []
    symbols: list[str] = []
    for chain in model:
        for res in chain:
            for atom in _selected_atoms(res, selection):
                el = atom.element
                if el.atomic_number == 0:
                    continue
                positions.append(atom.pos.tolist())
                numbers.append(el.atomic_number)
                symbols.append(el.name)
    if not numbers:
        raise InputError(
            f"{path}: no atoms left after selection (atoms={selection.atoms!r}, "
            f"chains={selection.chains}, assembly={selection.assembly})"
        )
    coordinates = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    bad = ~np.isfinite(coordinates).all(axis=1)
    if bad.any():
        raise InputError(
            f"{path}: atom {int(np.argmax(bad)) + 1} of the selection has a coordinate that is not "
            f"a finite number ({int(bad.sum())} such atoms); fix or remove them"
        )
    return AtomArrays(
        positions=coordinates,
        atomic_numbers=np.asarray(numbers, dtype=np.int64),
        elements=np.asarray(symbols, dtype=str),
    )


def _selected_atoms(res: gemmi.Residue, selection: AtomSelection) -> list[gemmi.Atom]:
    """The atoms of one residue that ``selection`` keeps."""
    polymer = res.entity_type == gemmi.EntityType.Polymer
    if selection.atoms == "calpha":
        if not polymer:
            return []
        return [a for a in res if a.name == "CA" and a.element == gemmi.Element("C")]
    if res.is_water() or res.entity_type == gemmi.EntityType.Water:
        if not selection.keep_waters:
            return []
    elif not polymer and not selection.keep_ions:
        if sum(1 for a in res if not a.is_hydrogen()) == 1:
            return []
    if selection.atoms == "heavy":
        return [a for a in res if not a.is_hydrogen()]
    return list(res)


def _local_names(pid: str) -> list[str]:
    """File names a bundled copy of ``pid`` may have, in order of preference."""
    names = []
    for ext in ("cif.gz", "pdb.gz", "cif", "pdb"):
        names += [f"{pid}.{ext}", f"{pid.upper()}.{ext}"]
    return names


def _parse(raw: bytes, label: str) -> gemmi.Structure:
    """Parse a structure file's bytes (gzip allowed); PDB text also gets the elements and chains
    that MD-style files leave out (:func:`elements.repair_pdb_structure`).

    Raises InputError naming ``label`` for a corrupt gzip, unreadable text, a PDB coordinate field
    that is blank or not a number, or elements that stay ambiguous.
    """
    text = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            text = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{label}: corrupt or truncated gzip ({err}); fetch it again") from err
    try:
        st = gemmi.read_structure_string(text)
    except (RuntimeError, ValueError) as err:
        raise InputError(f"{label}: not a readable PDB/mmCIF file ({err})") from err
    if st.input_format == gemmi.CoorFormat.Pdb:
        refuse_unreadable_pdb_coordinates(text, label)
        repair_pdb_structure(st, text, label)
    return st


# (axis, first column, last column) of an ATOM/HETATM record's coordinates, 1-based inclusive.
def _normalise(raw: bytes, label: str) -> bytes:
    """Validate a structure file's bytes and return them as gzipped mmCIF.

    Raises InputError naming ``label`` when the gzip is corrupt or truncated, the text is not a
    structure gemmi can read, or it holds no atoms.
    """
    if not raw.strip():
        raise InputError(f"{label}: the file is empty; expected a PDB or mmCIF structure")
    st = _parse(raw, label)
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(f"{label}: no atoms found (not a PDB/mmCIF structure, or empty)")
    refuse_non_finite_coordinates(st, label)
    if st.input_format == gemmi.CoorFormat.Mmcif:
        # Keep the archive's file as it is: gemmi would drop categories it does not model.
        return raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)
    st.setup_entities()
    return gzip.compress(st.make_mmcif_document().as_string().encode(), mtime=0)


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _download(url: str, *, timeout_s: float, retries: int) -> bytes | None:
    """GET ``url``; None if the server says it does not exist (404/410).

    Transient failures (timeouts, refused or dropped connections, 5xx, 429) are retried
    ``retries`` times with a short back-off; then InputError says what happened.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"cryoavae/{__version__}"})
    attempts = retries + 1
    last = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            if err.code in (404, 410):
                return None
            if err.code not in _RETRY_STATUS:
                raise InputError(
                    f"download of {url} refused: HTTP {err.code} {err.reason}"
                ) from err
            last = f"HTTP {err.code} {err.reason}"
        except urllib.error.URLError as err:
            if isinstance(err.reason, FileNotFoundError):  # file:// mirror without the entry
                return None
            last = (
                f"no answer within {timeout_s} s"
                if isinstance(err.reason, TimeoutError)
                else f"{err.reason}"
            )
        except TimeoutError:
            last = f"no answer within {timeout_s} s"
        except (http.client.HTTPException, ConnectionError) as err:
            last = f"connection broken ({type(err).__name__}: {err})"
        log.warning("download of %s failed (attempt %d/%d): %s", url, attempt + 1, attempts, last)
    raise InputError(
        f"could not download {url}: {last} (tried {attempts} times, structures.timeout_s="
        f"{timeout_s}); check the network or archive_url, or set structures.offline: true with "
        "the file in resources/"
    )
