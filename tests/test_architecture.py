"""The house rules of docs/architecture.md, read from the imports of src/cryoavae.

Every import statement of every library module counts, including those inside functions (a lazy
import is still a dependency) and those under ``if TYPE_CHECKING:`` (a type that needs a circle to
be named is a circle all the same).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cryoavae"
MAX_LINES = 400
MAX_FUNCTION_LINES = 80

# The stages, each a folder below cryoavae, and the folders each may import. The table is itself
# ordered lowest first, and each stage names only stages above it in the table, so the folders
# form no circle.
ALLOWED = {
    "core": set(),
    "geometry": {"core"},
    "structures": {"core", "geometry"},
    "affinity": {"core", "geometry", "structures"},
    "particles": {"core", "geometry"},
    "sources": {"core", "geometry", "structures", "affinity", "particles"},
    "model": {"core", "geometry"},
    "train": {"core", "geometry", "affinity", "particles", "model"},
    "orientation": {"core", "geometry", "particles", "model"},
    "inference": {"core", "geometry", "particles", "model", "orientation"},
    "evaluate": {
        "core",
        "geometry",
        "structures",
        "affinity",
        "particles",
        "model",
        "orientation",
        "inference",
    },
    "report": {"core", "particles", "inference", "evaluate"},
    # the command line stands above every stage, as the rule scripts do
    "cli": {
        "core",
        "geometry",
        "structures",
        "affinity",
        "particles",
        "sources",
        "model",
        "train",
        "orientation",
        "inference",
        "evaluate",
        "report",
    },
}
ROOT_ENTRIES = set(ALLOWED) | {"__init__.py", "config.schema.yaml"}


def modules() -> dict[str, Path]:
    """Dotted name below cryoavae (``train.run``, ``particles``) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Absolute names every import of the module refers to (``cryoavae.x`` made ``x``-relative
    below the package, other packages by their top-level name prefixed with ``!``)."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                module = ".".join([*base, node.module] if node.module else base)
                targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
                targets = ["cryoavae." + t if t else "cryoavae" for t in targets]
            elif node.module == "cryoavae":
                targets = [f"cryoavae.{a.name}" for a in node.names]
            else:
                targets = [node.module or ""]
        else:
            continue
        for target in targets:
            if target == "cryoavae" or target.startswith("cryoavae."):
                inner = target.removeprefix("cryoavae").lstrip(".")
                if inner:
                    found.add(inner)
            else:
                found.add("!" + target.split(".")[0])
    return found


MODULES = modules()
GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def stage(name: str) -> str:
    return name.split(".")[0]


def inner_targets(name: str) -> set[str]:
    return {t for t in GRAPH[name] if not t.startswith("!") and t != "__version__"}


def test_the_package_root_holds_only_the_stages():
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries == ROOT_ENTRIES, f"unexpected entries: {sorted(entries ^ ROOT_ENTRIES)}"


def test_every_stage_says_what_it_owns():
    for folder in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 10, f"cryoavae.{folder} has no docstring of its own"


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n))
def test_a_stage_imports_only_the_stages_below_it(name):
    allowed = ALLOWED[stage(name)] | {stage(name)}
    for target in inner_targets(name):
        assert stage(target) in allowed, (
            f"cryoavae.{name} imports cryoavae.{target}; {stage(name)}/ may import only "
            f"{sorted(allowed)}"
        )


def test_the_stage_table_has_no_circle():
    order = list(ALLOWED)
    for index, folder in enumerate(order):
        assert ALLOWED[folder] <= set(order[:index]), f"{folder} names a stage not below it"


def test_only_scripts_import_sources_and_training():
    """...and the command line, which is the user's own door to them (``cryoavae init`` reads a
    STAR file as the import does; ``convert-legacy`` runs a source)."""
    for name in GRAPH:
        for target in inner_targets(name):
            if stage(target) in {"sources", "train"}:
                assert stage(name) in {stage(target), "cli"}, (
                    f"cryoavae.{name} imports cryoavae.{target}"
                )


def test_nothing_in_the_library_imports_the_command_line():
    for name in GRAPH:
        for target in inner_targets(name):
            assert stage(target) != "cli" or stage(name) == "cli", f"cryoavae.{name}: {target}"


def test_particle_sources_never_import_each_other():
    def source(name: str) -> str | None:
        parts = name.split(".")
        return parts[1] if parts[0] == "sources" and len(parts) > 1 else None

    for name in GRAPH:
        own = source(name)
        for target in inner_targets(name):
            other = source(target)
            assert own is None or other is None or other == own, (
                f"cryoavae.{name} imports the particle source cryoavae.{target}"
            )


def test_the_library_never_imports_snakemake_or_the_scripts():
    for name, targets in GRAPH.items():
        assert not {"!snakemake", "!scripts"} & targets, f"cryoavae.{name}"


def test_only_report_imports_matplotlib():
    for name, targets in GRAPH.items():
        if stage(name) != "report":
            assert "!matplotlib" not in targets, f"cryoavae.{name} imports matplotlib"


def test_no_import_cycles_between_modules():
    def resolve(target: str) -> str:
        while target not in GRAPH and "." in target:  # `particles.table.IMAGE` -> module
            target = target.rsplit(".", 1)[0]
        return target

    edges = {
        name: {resolve(t) for t in inner_targets(name) if resolve(t) in GRAPH} for name in GRAPH
    }
    # a package's __init__ re-exporting its own modules is not a cycle through them
    for name in edges:
        edges[name] = {t for t in edges[name] if not (t and name.startswith(t + "."))}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"cryoavae.{name or '__init__'} has {lines} lines"


def test_no_function_over_80_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"cryoavae.{name}.{node.name} ({length} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)


def test_architecture_doc_names_every_module():
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_][a-z0-9_]*(?:[./][a-z_][a-z0-9_]*)*)(?:\.py|/)?`", doc))
    named = {n.replace("/", ".") for n in named}
    for name in MODULES:
        if name and not name.split(".")[-1].startswith("_"):
            assert name.split(".")[-1] in named, f"docs/architecture.md does not name `{name}`"
    for folder in ALLOWED:
        assert f"`{folder}/`" in doc, f"docs/architecture.md has no row for `{folder}/`"


def test_docstring_references_name_modules_that_exist():
    """``:mod:`` and ``:func:`` references in docstrings point at real modules, so a moved
    module cannot leave its old name behind in the prose."""
    dotted = {"cryoavae." + name if name else "cryoavae" for name in MODULES}
    stale = []
    for name, path in MODULES.items():
        parts = ["cryoavae", *name.split(".")] if name else ["cryoavae"]
        package = parts if path.name == "__init__.py" else parts[:-1]
        for kind, ref in re.findall(
            r":(mod|func|class|data|meth):`~?(\.?[\w.]+)`", path.read_text()
        ):
            if ref.startswith("."):
                dots = len(ref) - len(ref.lstrip("."))
                target = ".".join(package[: len(package) - dots + 1] + [ref.lstrip(".")])
            elif ref.startswith("cryoavae"):
                target = ref
            else:
                continue
            owners = [target] if kind == "mod" else [target.rsplit(".", 1)[0]]
            if kind != "mod" and target.count(".") > 1:
                owners.append(target.rsplit(".", 2)[0])  # a method or attribute of a class
            if not any(owner in dotted for owner in owners):
                stale.append(f"cryoavae.{name}: :{kind}:`{ref}`")
    assert not stale, "docstrings name modules that do not exist: " + ", ".join(stale)
