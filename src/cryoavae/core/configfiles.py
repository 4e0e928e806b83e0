"""A snakemake command line's ``--configfile`` files, read before Snakemake reads them.

Snakemake loads these files before it reads the Snakefile and refuses one that is not a mapping
(a YAML list, say) or not YAML with a message that does not name the file, so the workflow
profile (``profiles/default``) calls :func:`refuse_bad_configfiles` first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cryoavae.core.config import load_study_file
from cryoavae.core.errors import InputError

__all__ = ["configfile_arguments", "refuse_bad_configfiles"]


class _ConfigfileParser(argparse.ArgumentParser):
    """Reads only --configfile out of a snakemake command line; never prints or exits."""

    def error(self, message):
        raise ValueError(message)


def configfile_arguments(argv: Sequence[str]) -> list[str]:
    """The files a ``snakemake`` command line gives with ``--configfile`` (or ``--configfiles``),
    read as Snakemake's own parser reads them: several files after one option, ``=`` or an
    unambiguous abbreviation, the last option winning. Empty where the line cannot be read (it
    is then Snakemake's to report)."""
    parser = _ConfigfileParser(add_help=False, exit_on_error=False)
    parser.add_argument("--configfile", "--configfiles", nargs="+", default=[])
    parser.add_argument("--config", "-C", nargs="*")  # so that --config is not read as ours
    try:
        known, _ = parser.parse_known_args(list(argv))
    except (argparse.ArgumentError, ValueError):
        return []
    return [str(path) for path in known.configfile]


def refuse_bad_configfiles(argv: Sequence[str]) -> None:
    """Read every ``--configfile`` of a snakemake command line as the workflow will
    (:func:`load_study_file`); end the process with one line naming the first bad one.
    """
    for path in configfile_arguments(argv):
        try:
            load_study_file(path)
        except InputError as error:
            print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
            raise SystemExit(1) from None
