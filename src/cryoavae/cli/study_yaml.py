"""The study config ``cryoavae init`` writes: its sections, as YAML with comments, validated.

The comments say where each value came from and what to change, because the user edits this file
next, not the schema. The file is written through a temporary file that is read back strictly
(:func:`cryoavae.core.config.load_study_file`), compared with the sections meant and validated
as the workflow validates a config (:func:`cryoavae.core.config.validate_config`) before it is
renamed into place: a config that would not run is never left behind.
"""

from __future__ import annotations

import copy
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from cryoavae.core.atomic import atomic_path
from cryoavae.core.config import load_study_file, validate_config
from cryoavae.sources.star import StarContents

WIDTH = 99
TILT_MAX_DEG = 60.0  # the schema's default wedge, and a common tilt range
PICK_ERROR_PX = 3  # the translation search's reach, voxels: a picker's error and more


@dataclass(frozen=True)
class StudyText:
    """Everything the written config says, decided by :func:`cryoavae.cli.new_study.init_study`."""

    study: str
    star: StarContents
    star_as_given: str
    classes: list[str]
    how_named: str
    unseen: list[str]
    prior: str
    prior_csv: str | None
    voxel_size_angstrom: float
    voxel_note: str
    voxel_given: float | None
    model: dict
    orientations: bool = False


def study_sections(t: StudyText) -> dict:
    """The config as a mapping (what the YAML must read back as)."""
    star = {
        "particles": t.star_as_given,
        "classes": [] if t.prior == "structures" else list(t.classes),
        "unseen": list(t.unseen),
        "class_column": t.star.class_column,
    }
    if t.voxel_given is not None:
        star["voxel_size_angstrom"] = float(t.voxel_given)
    sections: dict = {"study": t.study, "seed": 0, "particle_source": "star", "star": star}
    if t.prior == "structures":
        sections["structures"] = {"ids": list(t.classes)}
    affinity = {"source": "soap" if t.prior == "structures" else t.prior}
    if t.prior == "csv":
        affinity["csv_path"] = t.prior_csv
    sections["affinity"] = affinity
    three_d = len(t.star.box_shape) == 3
    sections["missing_wedge"] = (
        {"enabled": True, "tilt_max_deg": TILT_MAX_DEG} if three_d else {"enabled": False}
    )
    sections["model"] = dict(t.model)
    sections["training"] = {
        "epochs": 40,
        "batch_size": 64,
        "learning_rate": 0.001,
        "beta": {"value": 1.0},
        "gamma": {"value": 0.0 if t.prior == "none" else 10.0},
    }
    if t.orientations:
        sections["training"]["beta"] = {"value": 0.001}
        sections["training"]["shift_equivariance"] = 1.0
        sections["orientation"] = {
            "method": "template_matching",
            "max_shift_angstrom": round(PICK_ERROR_PX * t.voxel_size_angstrom, 3),
            "centre_from": "shift_head",
        }
    sections["variants"] = {"beta_vae" if t.prior == "none" else "avae": {}}
    return sections


def write_study(out: Path, t: StudyText) -> None:
    """Write the config to ``out``, only once it reads back as meant and validates.

    Raises:
        InputError: the workflow's own one-line complaint about the config, naming ``out``.
    """
    sections = study_sections(t)
    text = render(t, sections)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
        written = load_study_file(tmp)
        if written != sections:  # a rendering bug, not the user's input
            raise RuntimeError(f"cryoavae init wrote {written!r}, meant {sections!r}")
        validate_config(copy.deepcopy(written), source=str(out))


def render(t: StudyText, sections: dict) -> str:
    """The YAML text of ``sections``, each section under the comment that explains it."""
    blocks = [_header(t), *_top(sections, ("study", "seed", "particle_source"))]
    notes = _notes(t)
    sections_in_order = ("star", "structures", "affinity", "missing_wedge", "model", "training")
    for name in (*sections_in_order, "orientation"):
        if name in sections:
            blocks.append(_block(name, sections[name], notes.get(name, {})))
    blocks.append(_block("variants", sections["variants"], notes["variants"]))
    return "\n\n".join(blocks) + "\n"


def _header(t: StudyText) -> str:
    s = t.star
    box = " x ".join(map(str, s.box_shape))
    across = s.box_shape[0] * t.voxel_size_angstrom
    named = t.classes if s.numbered else s.classes  # numbers are shown by the study's names
    counts = ", ".join(f"{c} {n}" for c, n in zip(named, s.counts, strict=True))
    column = f"{s.class_column} 1..{len(s.classes)}" if s.numbered else s.class_column
    return _comment(
        f"A study of your own particles, written by `cryoavae init` from {t.star_as_given}. "
        "Every key is documented in config/README.md; keys left out take the schema's "
        "defaults (src/cryoavae/config.schema.yaml). Paths are relative to the folder "
        "snakemake runs in (where cryoavae init ran): run "
        f"`snakemake --cores 2 --configfile <this file>` there.",
        "",
        f"The file: {s.n_particles} particles in {s.n_files} file(s); boxes of {box} voxels at "
        f"{t.voxel_size_angstrom:g} Å/voxel ({t.voxel_note}), {across:g} Å across; particles "
        f"per class ({column}): {counts}.",
        indent="",
    )


def _notes(t: StudyText) -> dict[str, dict[str, str]]:
    """Comments above keys (``""``: above the section)."""
    classes_note = f"The study's classes: {t.how_named}."
    if t.prior == "structures":
        classes_note += " Empty: the classes are structures.ids below."
    model_edge = t.star.box_shape[0]
    levels = len(t.model["channels"])
    return {
        "star": {
            "particles": "Your STAR file, read in place (never copied).",
            "classes": classes_note,
            "unseen": "Classes held out of training, placed by the model afterwards (open "
            "set); at least 2 must stay seen.",
            "class_column": "The column holding each particle's class (numbers or names).",
            "voxel_size_angstrom": "Used because neither the optics block nor the MRC "
            "headers give a voxel size.",
        },
        "structures": {
            "ids": "Your classes are PDB entries: their atoms make the prior (fetched from "
            "the archive; structures.offline: true uses resources/pdb and the cache only)."
        },
        "affinity": {"": _prior_note(t)},
        "missing_wedge": {
            "": "The particles' missing wedge: a tilt series about y through +-tilt_max_deg. "
            "Set it to your tilt range; the class averages and template matching weight by it."
            if len(t.star.box_shape) == 3
            else "2-D particles have no missing wedge."
        },
        "model": {
            "": f"The model, sized for {model_edge}-voxel boxes: each entry of channels halves "
            f"the box ({model_edge} -> {model_edge // 2**levels} after {levels}); the "
            "project's 32^3 studies use [8, 16, 32] with latent_dims 8. More latent_dims for "
            "many classes or fine detail; batch_norm keeps some seeds from getting stuck."
        },
        "training": {
            "": "40 epochs suit a few thousand particles; watch training_curves.png and "
            "raise them while the validation loss still falls.",
            "gamma": "The weight of the prior (0: a plain beta-VAE)"
            + ("; affinity.source none keeps it at 0." if t.prior == "none" else "."),
        },
        "orientation": {
            "": "Each particle's orientation and centre: matched against one template per seen "
            "class (the decoder's rendering of the class, refined by averaging its particles), "
            "from where the encoder's shift head puts the centre. Written as the STAR files' "
            "angles and origins; about 10 minutes per 4,000 32^3 particles on 2 CPU cores. "
            "global_resolution_px: 3 flips fewer near-symmetric particles at 2.4x the "
            "matching time (docs/science.md 4.8).",
            "max_shift_angstrom": f"How far a centre may sit from its box's ({PICK_ERROR_PX} "
            "voxels); raise it for a picker that misses by more.",
        },
        "variants": {
            "": "Variants train side by side and are compared in summary.md, e.g. add "
            "beta_vae: {training: {gamma: {value: 0}}} as a baseline without the prior."
            if t.prior != "none"
            else "One beta-VAE; with a prior (affinity.source csv), add avae: {training: "
            "{gamma: {value: 10}}} to compare."
        },
    }


def _prior_note(t: StudyText) -> str:
    if t.prior == "none":
        return (
            "No prior (--prior none): a beta-VAE, so training.gamma must stay 0; your classes "
            "only score the latent space. To shape it by how your classes relate, give a "
            "matrix: affinity: {source: csv, csv_path: prior.csv} (a header row of class "
            "names, then the square matrix) and a gamma above 0."
        )
    if t.prior == "uniform":
        return (
            "The uniform prior (--prior uniform): the identity, each class similar only to "
            "itself. It carries no knowledge of how your classes relate (the run log warns): "
            "the affinity term only pushes every pair of classes apart. A matrix of your own: "
            "affinity: {source: csv, csv_path: prior.csv}."
        )
    if t.prior == "csv":
        return (
            f"Your prior (--prior csv): {t.prior_csv}, read now against the classes above "
            "(header row of class names, symmetric, unit diagonal, values in [-1, 1])."
        )
    return (
        "The prior from the structures (--prior structures): SOAP descriptors of their "
        "atoms; map_cc (density cross-correlation) is the other choice."
    )


def _top(sections: dict, keys) -> list[str]:
    return ["\n".join(f"{k}: {flow(sections[k])}" for k in keys)]


def _block(name: str, body: dict, notes: dict[str, str]) -> str:
    lines = [_comment(notes[""], indent="")] if "" in notes else []
    lines.append(f"{name}:")
    for key, value in body.items():
        if key in notes:
            lines.append(_comment(notes[key], indent="  "))
        lines.append(f"  {key}: {flow(value)}")
    return "\n".join(lines)


def _comment(*paragraphs: str, indent: str) -> str:
    lines = []
    for text in paragraphs:
        wrapped = textwrap.wrap(text, WIDTH - len(indent) - 2) or [""]
        lines += [f"{indent}# {line}".rstrip() for line in wrapped]
    return "\n".join(lines)


def flow(value) -> str:
    """``value`` in YAML flow style; a string plain where it reads back as itself inside a
    flow list (no comma, colon or keyword trouble), else double-quoted (JSON is YAML)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):  # PyYAML reads 1e-05 as a string: its floats need a dot
        mantissa, e, exponent = repr(value).partition("e")
        return f"{mantissa}{'' if '.' in mantissa else '.0'}{e}{exponent}" if e else repr(value)
    text = str(value)
    try:
        plain = text and yaml.safe_load(f"[{text}]") == [text] and "#" not in text
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)
