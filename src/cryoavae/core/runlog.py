"""Logging and provenance for rule scripts: the run log starts with what is needed to rerun,
and ends with the error, if there is one.

Every rule script runs its body inside :func:`rule_logging`, the one entry point that decides
how a failure looks: a user's mistake (:class:`~cryoavae.core.errors.InputError`) becomes one logged
line and exit status 1; anything else is a bug, logged with its traceback and raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from cryoavae import __version__
from cryoavae.core.errors import InputError

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
    logging.captureWarnings(True)  # warnings of the libraries we call go to the log too
    logger = logging.getLogger("cryoavae")
    details = " ".join(f"{k}={v}" for k, v in context.items())
    logger.info(
        "cryoavae %s python %s on %s (%d CPUs) %s",
        *(__version__, platform.python_version(), cpu_model(), os.cpu_count() or 1, details),
    )
    return logger


@contextlib.contextmanager
def rule_logging(log_path: str | os.PathLike | None, **context) -> Iterator[logging.Logger]:
    """Run a rule script's body: logging to the rule's log and stderr (see :func:`start_logging`).

    An :class:`InputError` (bad input: the user's to fix) is logged as one line, ``ERROR`` and
    the message, and the script exits with status 1, so Snakemake fails the job and removes its
    outputs without a traceback. Any other exception is logged with its traceback and raised:
    real bugs stay visible, in the log as well as on the console.
    """
    logger = start_logging(log_path, **context)
    try:
        yield logger
    except InputError as error:
        logger.error("%s", " ".join(str(error).split()))
        logging.shutdown()
        raise SystemExit(1) from None
    except Exception:
        logger.exception("unexpected error (a bug in cryoavae, not in your input)")
        logging.shutdown()
        raise


@contextlib.contextmanager
def command_line_errors(prog: str) -> Iterator[None]:
    """The same rule for a command-line tool: an :class:`InputError` ends it with one line on
    stderr (``prog: error: ...``) and exit status 1; anything else keeps its traceback."""
    try:
        yield
    except InputError as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(1) from None


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


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
    """Everything needed to rerun a study: config, versions, revision, seed, host, CPU model and
    threads, devices. Results are bit-identical for the same seed, versions, CPU type and thread
    count; another CPU or thread count can change the last bits, and training amplifies them."""
    return {
        "config": config,
        "seed": config.get("seed"),
        "packages": package_versions(),
        "git": git_revision(code_dir),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": config.get("resources", {}).get("threads"),
        "devices": devices,
    }


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
