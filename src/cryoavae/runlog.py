"""Logging and provenance for rule scripts: the run log starts with what is needed to rerun."""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from . import __version__

PACKAGES = (
    "cryoavae",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "umap-learn",
    "mrcfile",
    "starfile",
    "gemmi",
    "dscribe",
    "ase",
    "snakemake",
    "matplotlib",
)


def start_logging(log_path: str | os.PathLike | None, **context) -> logging.Logger:
    """Send the library's logging to ``log_path`` and stderr; first line: version and context."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logger = logging.getLogger("cryoavae")
    details = " ".join(f"{k}={v}" for k, v in context.items())
    logger.info("cryoavae %s python %s %s", __version__, platform.python_version(), details)
    return logger


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(directory: str | os.PathLike = ".") -> dict[str, str | bool | None]:
    """The commit the code ran from and whether the tree had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def provenance(config: dict, devices: dict[str, str], code_dir: str | os.PathLike) -> dict:
    """Everything needed to rerun a study: config, versions, revision, seed, host, devices."""
    return {
        "config": config,
        "seed": config.get("seed"),
        "packages": package_versions(),
        "git": git_revision(code_dir),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "devices": devices,
    }


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
