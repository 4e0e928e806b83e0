"""The house rules of docs/architecture.md, read from the imports of src/cryoavae.

Every import statement of every library module counts, including those inside functions (a lazy
import is still a dependency); imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cryoavae"

# Layers, lowest first: a module may import its own layer and those below, never one above.
LAYERS = {
    "foundation": [
        "errors",
        "atomic",
        "yaml_io",
        "schema",
        "config",
        "runlog",
        "orientations",
        "wedge",
    ],
    "inputs": ["structures", "density", "affinity", "particles"],
    "sources": [
        "simulate",
        "extract",
        "particle_lists",
        "characters",
        "legacy_folder",
        "star_import",
        "tomogram",
    ],
    "learning": [
        "losses",
        "schedules",
        "rotations",
        "splats",
        "layers",
        "decoders",
        "pose_search",
        "measurement",
        "model",
        "data",
        "train",
    ],
    "inference": [
        "latents",
        "averaging",
        "template_matching",
        "pose_matching",
        "embed",
        "apply",
        "interpolate",
        "annotate",
    ],
    "evaluation": ["evaluate", "summary"],
    "report": ["report"],
}
PARTICLE_SOURCES = set(LAYERS["sources"])
SOURCE_GROUPS = [
    {"simulate"},
    {"extract", "particle_lists"},
    {"characters"},
    {"legacy_folder"},
    {"star_import"},
    {"tomogram"},
]
INFERENCE = set(LAYERS["inference"]) | {"evaluate"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Dotted name below cryoavae (``train.run``, ``particles``) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(name: str, path: Path) -> set[str]:
    """Absolute names every import of the module refers to (``cryoavae.x`` made ``x``-relative
    below the package, other packages by their top-level name prefixed with ``!``)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                module = ".".join([*base, node.module] if node.module else base)
                targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
                targets = ["cryoavae." + t if t else "cryoavae" for t in targets]
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


GRAPH = {name: imports(name, path) for name, path in modules().items()}


def top(name: str) -> str:
    return name.split(".")[0]


def layer_of(name: str) -> int:
    for index, members in enumerate(LAYERS.values()):
        if top(name) in members:
            return index
    raise AssertionError(f"cryoavae.{name} is in no layer of docs/architecture.md")


def test_every_module_has_a_layer():
    for name in GRAPH:
        if name:  # the package itself only holds __version__
            layer_of(name)


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if n))
def test_imports_never_run_back_up(name):
    for target in GRAPH[name]:
        if target.startswith("!") or not target or target == "__version__":
            continue
        assert layer_of(target) <= layer_of(name), (
            f"cryoavae.{name} ({list(LAYERS)[layer_of(name)]}) imports cryoavae.{target} "
            f"({list(LAYERS)[layer_of(target)]}), a layer above it"
        )


def test_the_library_never_imports_snakemake_or_the_scripts():
    for name, targets in GRAPH.items():
        assert not {"!snakemake", "!scripts"} & targets, f"cryoavae.{name}"


def test_only_report_imports_matplotlib():
    for name, targets in GRAPH.items():
        if top(name) != "report":
            assert "!matplotlib" not in targets, f"cryoavae.{name} imports matplotlib"


def test_model_and_training_never_import_a_particle_source():
    for name, targets in GRAPH.items():
        if list(LAYERS)[layer_of(name) if name else 0] == "learning":
            assert not {top(t) for t in targets} & PARTICLE_SOURCES, f"cryoavae.{name}"


def test_inference_and_evaluation_never_import_training():
    for name, targets in GRAPH.items():
        if top(name) in INFERENCE:
            assert "train" not in {top(t) for t in targets}, f"cryoavae.{name} imports train"


def test_particle_sources_depend_on_the_contract_not_on_each_other():
    for group in SOURCE_GROUPS:
        for name, targets in GRAPH.items():
            if top(name) in group:
                sideways = {top(t) for t in targets} & (PARTICLE_SOURCES - group)
                assert not sideways, f"cryoavae.{name} imports the particle source {sideways}"


def test_no_import_cycles_between_modules():
    def resolve(target: str) -> str:
        while target not in GRAPH and "." in target:  # `particles.table.IMAGE` -> module
            target = target.rsplit(".", 1)[0]
        return target

    edges = {
        name: {resolve(t) for t in targets if not t.startswith("!") and resolve(t) in GRAPH}
        for name, targets in GRAPH.items()
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


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_over_400_lines(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"cryoavae.{name or '__init__'} has {lines} lines"


def test_architecture_doc_names_every_module():
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)(?:\.py|/)?`", doc))
    for name in modules():
        if name and "." not in name:
            assert name in named, f"docs/architecture.md does not mention `{name}`"
