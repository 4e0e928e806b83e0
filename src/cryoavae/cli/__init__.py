"""The ``cryoavae`` command: one door to what a user runs outside the workflow.

``cryoavae init`` writes a study config around the user's own STAR file (:mod:`.new_study`,
:mod:`.study_yaml`), ``cryoavae info`` says what a checkpoint holds (:mod:`.checkpoint_info`),
and ``cryoavae apply`` / ``cryoavae convert-legacy`` hand their arguments, unchanged, to
``python -m cryoavae.inference.apply`` and ``python -m cryoavae.sources.legacy_folder``, which go
on working by themselves. Like the rule scripts, the command line stands above every stage and
may import any of them; nothing in the library imports it. Each subcommand is imported only
when it runs, so ``--help`` answers at once. A user's mistake ends the command with one line and
exit status 1 (:func:`cryoavae.core.runlog.command_line_errors`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from cryoavae.core.runlog import command_line_errors

PROG = "cryoavae"
DELEGATED = {
    "apply": "embed new particles with a trained model (python -m cryoavae.inference.apply)",
    "convert-legacy": "convert the original Affinity-VAE code's data folder to a STAR study "
    "(python -m cryoavae.sources.legacy_folder)",
}
INIT_EXAMPLE = """examples:
  cryoavae init --star data/particles.star --unseen class3 -o config/my_study.yaml
  cryoavae init --star data/particles.star --class-column rlnClassNumber \\
      --classes ribosome,proteasome,tric --unseen tric --prior uniform -o config/my_study.yaml
  cryoavae init --star warp/particles.star --class-column tmLabel \\
      --prior csv data/prior.csv -o config/my_study.yaml
  cryoavae init --star data/particles.star --orientations -o config/my_poses.yaml
then: snakemake --cores 2 --configfile config/my_study.yaml"""
INFO_EXAMPLE = """example:
  cryoavae info results/my_study/seed0/models/avae/model.pt
  cryoavae info --json results/my_study/seed0/models/avae/model.pt > model_info.json"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cryoavae <subcommand> ...``; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "apply":  # the same arguments, parsed by the module itself
        from cryoavae.inference.apply import main as apply_main

        return apply_main(argv[1:], prog=f"{PROG} apply")
    if argv and argv[0] == "convert-legacy":
        from cryoavae.sources.legacy_folder import main as convert_main

        return convert_main(argv[1:], prog=f"{PROG} convert-legacy")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    with command_line_errors(f"{PROG} {args.command}"):
        return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_wrapped(
            "Affinity-VAE for cryo-ET subtomograms: set up a study of your own particles, "
            "inspect a trained model, apply it to new particles. The studies themselves run "
            "with snakemake (see README.md)."
        ),
        epilog=f"example:\n  {INIT_EXAMPLE.splitlines()[1].strip()}\n"
        "run `cryoavae <command> --help` for each command's options and examples",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>")
    _add_init(commands)
    info = commands.add_parser(
        "info",
        help="what a model checkpoint (model.pt) holds",
        description=_wrapped(
            "What a checkpoint holds: classes, model and training settings, epochs trained, "
            "seed; and the final losses and metrics where history.tsv and metrics.json still "
            "sit beside it. Read with torch.load(weights_only=True): never runs code."
        ),
        epilog=INFO_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument("checkpoint", type=Path, help="model.pt (or a resume file, last.pt)")
    info.add_argument("--json", action="store_true", help="print JSON instead of lines")
    info.set_defaults(run=_run_info)
    for name, summary in DELEGATED.items():  # listed here; main() hands them their arguments
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def _add_init(commands) -> None:
    init = commands.add_parser(
        "init",
        help="write a study config for your own particles (a STAR file)",
        description=_wrapped(
            "Write a complete, validated study config (particle_source: star) for the "
            "particles of a RELION 3.1/4/5 or Warp STAR file: the classes found in it, its "
            "voxel size (optics block, else the MRC headers) and box, model settings sized for "
            "that box, and the prior you choose, with comments saying what to change."
        ),
        epilog=INIT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--star", required=True, type=Path, help="your particles' STAR file")
    init.add_argument(
        "-o", "--out", required=True, type=Path, help="the config to write (config/<study>.yaml)"
    )
    init.add_argument(
        "--class-column",
        default="rlnClassNumber",
        help="column of each particle's class: integers 1..N or names (default rlnClassNumber)",
    )
    init.add_argument(
        "--classes",
        type=_names,
        help="the classes' names, comma-separated: one per class number 1..N (default "
        "class1..classN), or for a column of names the study's classes in order (default: "
        "the file's names in order of first appearance)",
    )
    init.add_argument(
        "--unseen", type=_names, default=[], help="classes held out of training, comma-separated"
    )
    init.add_argument(
        "--prior",
        nargs="+",
        default=["none"],
        metavar="none|uniform|structures|csv PATH",
        help="the affinity prior: none (a beta-VAE, the default), uniform (the identity: each "
        "class like itself only, no knowledge of how they relate), structures (classes named "
        "by PDB ID: SOAP of their atoms) or csv PATH (your matrix)",
    )
    init.add_argument("--study", help="the study's name (default: the config file's name)")
    init.add_argument(
        "--voxel-size-angstrom",
        type=float,
        help="the voxel size, needed only when neither the optics block nor the headers give it",
    )
    init.add_argument(
        "--orientations",
        action="store_true",
        help="3-D: the model that gives each particle's orientation and centre (a decoder that "
        "turns a shape by the pose, template matching from the encoder's centre; slower)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(run=_run_init)


def _wrapped(text: str) -> str:
    """A description wrapped for a terminal (the raw formatter keeps the examples' lines)."""
    return textwrap.fill(text, 79)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no class (expected a,b,...)")
    return names


def _run_init(args: argparse.Namespace) -> int:
    from cryoavae.cli.new_study import PRIORS, StudyRequest, init_study
    from cryoavae.core.errors import InputError

    prior, *rest = args.prior
    if prior not in PRIORS or len(rest) != (prior == "csv"):
        raise InputError(
            f"--prior {' '.join(args.prior)}: expected none, uniform, structures or csv PATH"
        )
    request = StudyRequest(
        star=args.star,
        out=args.out,
        class_column=args.class_column,
        classes=args.classes,
        unseen=args.unseen,
        prior=prior,
        prior_csv=Path(rest[0]) if rest else None,
        study=args.study,
        voxel_size_angstrom=args.voxel_size_angstrom,
        force=args.force,
        orientations=args.orientations,
    )
    text = init_study(request)
    print(f"wrote {args.out}: study {text.study!r}, classes {', '.join(text.classes)}", end="")
    print(f" (unseen: {', '.join(text.unseen)})" if text.unseen else "")
    print(f"prior: {prior}" + (f" {rest[0]}" if rest else "") + f"; see the comments in {args.out}")
    print(f"run: snakemake --cores 2 --configfile {args.out}")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    import json

    from cryoavae.cli.checkpoint_info import checkpoint_info, format_info

    info = checkpoint_info(args.checkpoint)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
