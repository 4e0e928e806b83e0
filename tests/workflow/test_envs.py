"""The conda environment the rules declare agrees with the package's own requirements."""

import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def test_conda_env_pins_satisfy_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    required = {
        canonicalize_name(Requirement(r).name): Requirement(r) for r in project["dependencies"]
    }
    env = yaml.safe_load((repo / "envs" / "cryoavae.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for line in pip:
        if line.startswith("-e"):
            continue
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = req
    for name, req in required.items():
        assert name in pins, f"envs/cryoavae.yaml lacks {name}"
        pinned = [s.version for s in pins[name].specifier if s.operator == "=="]
        if pinned:
            assert req.specifier.contains(pinned[0]), f"{name}=={pinned[0]} violates {req}"
