"""Study configuration: the whole config file validated before any job, and what it implies.

:func:`validate_config` fills the schema's defaults in place (:mod:`cryoavae.core.schema`, the one
home of names, defaults and bounds), validates every model variant as strictly as the base
sections, and checks what a schema cannot say (relations between sections), so a bad config
stops before any job runs with one line naming the YAML path, the value and what is accepted.
:mod:`cryoavae.core.configfiles` reads a command line's ``--configfile`` files earlier still.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path

from cryoavae.core import copick_config as copick
from cryoavae.core.acquisition import particle_microscope, particle_wedge
from cryoavae.core.errors import InputError
from cryoavae.core.schema import validate_against
from cryoavae.core.yaml_io import load_yaml

__all__ = [
    "canonical_order",
    "class_names",
    "classes_from_structures",
    "config_source",
    "deep_merge",
    "load_study_file",
    "model_settings",
    "particle_microscope",
    "particle_wedge",
    "recentre_source",
    "unseen_classes",
    "validate_config",
    "variant_sections",
]


# Keys that moved, and where to: a config that still sets one is told where the setting lives now.
MOVED_KEYS = {
    ("simulation", "shift_max_px"): "simulation.shift_sd_angstrom (Gaussian sd per axis, in Å)",
    ("simulation", "missing_wedge"): "missing_wedge (a top-level section: enabled, tilt_max_deg)",
    ("tomograms", "tilt_min_deg"): "missing_wedge.tilt_max_deg (tilts run through +- it)",
    ("tomograms", "tilt_max_deg"): "missing_wedge.tilt_max_deg (tilts run through +- it)",
    ("model", "wedge_tilt_max_deg"): "model.measure_wedge: true, with missing_wedge.tilt_max_deg",
}


def config_source(paths) -> str:
    """How error messages name the config: its file(s), relative to here when inside."""
    names = []
    for path in map(Path, paths):
        try:
            names.append(str(path.resolve().relative_to(Path.cwd().resolve())))
        except ValueError:
            names.append(str(path))
    return " + ".join(names) or "config"


def load_study_file(path: str | os.PathLike) -> dict:
    """A study config file read strictly (:func:`cryoavae.core.yaml_io.load_yaml`); its top level
    must be a mapping of sections."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InputError(
            f"{Path(path)}: a study config is a mapping of sections (study: ..., structures: "
            f"...); this file holds a {type(data).__name__}"
        )
    return data


def canonical_order(value):
    """``value`` with every mapping's keys sorted, recursively (lists keep their order)."""
    if isinstance(value, Mapping):
        return {key: canonical_order(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical_order(item) for item in value]
    return value


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``base`` with ``override`` applied recursively (override wins; dicts merge)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate a study config in place (defaults filled) and check what a schema cannot.

    Each variant's ``model``/``training`` overrides are merged onto the base sections and the
    result validated against the same sub-schemas, so a typo inside a variant fails as loudly as
    one in the base section.
    """
    if not isinstance(config, dict):
        raise InputError(f"{source}: expected a mapping of sections, got {type(config).__name__}")
    _refuse_moved_keys(config, source)
    validate_against(config, source)
    for name, override in config["variants"].items():
        merged = {
            "study": config["study"],
            **{s: deep_merge(config[s], override.get(s, {})) for s in ("model", "training")},
        }
        try:
            validate_against(merged, f"{source}: variants.{name}")
        except InputError as error:  # name the variant, then the key inside its section
            message = str(error).replace(f"variants.{name}: ", f"variants.{name}.", 1)
            raise InputError(message) from None
    _check_study(config, source)
    _check_orientation(config, source)
    _check_recentring(config, source)
    _check_measurement(config, source)
    return config


def _refuse_moved_keys(config: dict, source: str) -> None:
    """One line naming a key that moved and its new home (before the schema calls it unknown)."""
    sections = [("", config)]
    variants = config.get("variants")
    if isinstance(variants, Mapping):
        sections += [(f"variants.{name}.", v) for name, v in variants.items()]
    for prefix, body in sections:
        if not isinstance(body, Mapping):
            continue
        for (section, key), home in MOVED_KEYS.items():
            if isinstance(body.get(section), Mapping) and key in body[section]:
                raise InputError(
                    f"{source}: {prefix}{section}.{key} has moved; the setting is now {home}"
                )


def model_settings(config: Mapping, variant: str) -> dict:
    """A variant's ``model`` section with the particles' wedge and microscope filled in
    (``wedge_tilt_max_deg``: the wedge when ``measure_wedge`` asks for it; ``microscope``: the
    CTF's settings when ``measure_ctf`` does; else None)."""
    model = variant_sections(config, variant)[0]
    model["wedge_tilt_max_deg"] = particle_wedge(config) if model["measure_wedge"] else None
    model["microscope"] = particle_microscope(config) if model["measure_ctf"] else None
    return model


def _check_measurement(config: dict, source: str) -> None:
    if config["particle_source"] == "tomograms" and not config["missing_wedge"]["enabled"]:
        raise InputError(
            f"{source}: missing_wedge.enabled is false, but a tilt series always leaves a wedge; "
            "set missing_wedge.tilt_max_deg to the tilt range instead"
        )
    for name in config["variants"]:
        model = variant_sections(config, name)[0]
        if model["measure_wedge"] and particle_wedge(config) is None:
            raise InputError(
                f"{source}: variant {name!r} sets model.measure_wedge, but the particles have no "
                "missing wedge (missing_wedge.enabled is false, or the particles are 2-D)"
            )
        if model["measure_ctf"] and particle_microscope(config) is None:
            raise InputError(
                f"{source}: variant {name!r} sets model.measure_ctf, but the particles carry no "
                "CTF the study knows (only simulated particles with simulation.ctf.enabled do)"
            )


def _check_study(config: dict, source: str) -> None:
    structures = config["structures"]
    names = class_names(config)
    particle_source, affinity_source = config["particle_source"], config["affinity"]["source"]
    if particle_source == "characters":
        if affinity_source not in ("glyph", "csv"):
            raise InputError(
                f"{source}: affinity.source = {affinity_source!r} does not apply to "
                "particle_source 'characters'; expected 'glyph' or 'csv'"
            )
        overlap = set(config["characters"]["seen"]) & set(config["characters"]["unseen"])
        if overlap:
            raise InputError(f"{source}: characters.unseen repeats seen classes {sorted(overlap)}")
        return
    if affinity_source == "glyph":
        raise InputError(
            f"{source}: affinity.source = 'glyph' needs particle_source 'characters'; "
            f"expected one of ['soap', 'map_cc', 'csv', 'uniform', 'none']"
        )
    _check_no_prior(config, source)
    if particle_source == "extract":
        if not config["extraction"]["tomograms"]:
            raise InputError(f"{source}: particle_source 'extract' needs extraction.tomograms")
        for k, entry in enumerate(config["extraction"]["tomograms"]):
            for key in ("tomogram", "particles"):
                _check_relative_path(entry[key], f"{source}: extraction.tomograms[{k}].{key}")
    if particle_source == "star":
        _check_star(config, source)
    if particle_source == "copick":
        copick.check_copick_study(config, source)
    if particle_source == "tomograms":
        _check_tomograms(config, source)
    where = "structures.ids/files" if classes_from_structures(config) else "star.classes"
    where = "copick.objects" if particle_source == "copick" else where
    if len(names) < 2:
        raise InputError(f"{source}: {where} name {len(names)} classes; a study needs at least 2")
    if len({n.lower() for n in names}) != len(names):
        raise InputError(f"{source}: {where} repeat a class name (names match in any case)")
    lowered = {n.lower() for n in names}
    held_out = [("structures.unseen", n) for n in structures["unseen"]]
    held_out += [(f"{s}.unseen", n) for s in ("star", "copick") for n in config[s]["unseen"]]
    for key, name in held_out:
        if name.lower() not in lowered:
            raise InputError(
                f"{source}: {key} names {name!r}, which is not a class of this study "
                f"(classes: {names})"
            )
    with_maps = names if classes_from_structures(config) else []
    for name in config["evaluation"]["symmetry"]:
        if name not in with_maps:
            raise InputError(
                f"{source}: evaluation.symmetry names {name!r}, which is not a class with a map "
                f"in this study (classes with maps: {with_maps})"
            )
    seen = [n for n in names if n not in unseen_classes(config)]
    if len(seen) < 2:
        raise InputError(f"{source}: structures.unseen leaves {len(seen)} seen classes; need >= 2")
    for name, path in structures["files"].items():
        _check_relative_path(path, f"{source}: structures.files.{name}")
    for name, path in config["apply"]["particle_sets"].items():
        _check_relative_path(path, f"{source}: apply.particle_sets.{name}")
    if config["affinity"]["source"] == "csv" and not config["affinity"]["csv_path"]:
        raise InputError(f"{source}: affinity.source = 'csv' needs affinity.csv_path")


def _check_no_prior(config: dict, source: str) -> None:
    """``affinity.source: none`` promises a beta-VAE: a variant that still weights the affinity
    term would train towards the placeholder identity as if it were a prior."""
    if config["affinity"]["source"] != "none":
        return
    for name in config["variants"]:
        gamma = variant_sections(config, name)[1]["gamma"]["value"]
        if gamma > 0:
            raise InputError(
                f"{source}: affinity.source 'none' trains without a prior, but variant {name!r} "
                f"has training.gamma.value = {gamma}; set it to 0, or choose a prior "
                "(affinity.source: uniform or csv)"
            )


def _check_orientation(config: dict, source: str) -> None:
    """Template matching needs a 3-D decoder that turns a canonical particle, in every variant."""
    orientation = config["orientation"]
    if orientation["method"] != "template_matching":
        if config["evaluation"]["novelty_score"] == "mahalanobis_fit":
            raise InputError(
                f"{source}: evaluation.novelty_score 'mahalanobis_fit' needs each particle's fit "
                "to its matched template (orientation.method: template_matching)"
            )
        return
    flat = config["particle_source"] == "characters"
    for name in config["variants"]:
        model = variant_sections(config, name)[0]
        if flat or model["decoder"] != "gaussian_splat" or model["pose_dims"] != 6:
            raise InputError(
                f"{source}: orientation.method 'template_matching' needs a decoder that turns a "
                f"canonical particle in 3-D (model.decoder gaussian_splat, pose_encoding "
                f"rotation6d, pose_dims 6); variant {name!r} has decoder {model['decoder']!r}, "
                f"pose_dims {model['pose_dims']}"
            )
        if orientation["centre_from"] == "shift_head" and model["translation_px"] <= 0:
            raise InputError(
                f"{source}: orientation.centre_from 'shift_head' needs a shift head in every "
                f"variant; variant {name!r} has model.translation_px 0"
            )
        if model["measure_ctf"] and not orientation["ctf"]:
            raise InputError(
                f"{source}: variant {name!r} sets model.measure_ctf, so its decoder renders the "
                "density without the CTF; set orientation.ctf: true so that the templates are "
                "filtered by each particle's CTF as the particles were"
            )
    if orientation["ctf"] and not (
        config["particle_source"] == "simulate" and config["simulation"]["ctf"]["enabled"]
    ):
        raise InputError(
            f"{source}: orientation.ctf needs simulated particles with simulation.ctf.enabled "
            "(the CTF's microscope is taken from there)"
        )


def recentre_source(config: Mapping, variant: str) -> str | None:
    """The variant whose matched centres ``variant``'s particles are moved onto
    (``training.recentre_from``), or None."""
    return variant_sections(config, variant)[1]["recentre_from"]


def _check_recentring(config: dict, source: str) -> None:
    """A variant re-centred from another needs that one in the study, no circle of them, and
    template matching that searched shifts. A chain is fine: each variant's shifts are relative
    to the boxes as picked, so re-centring from a re-centred variant refines the centres."""
    orientation = config["orientation"]
    for name in config["variants"]:
        origin, seen = recentre_source(config, name), [name]
        if origin is None:
            continue
        where = f"{source}: variants.{name}.training.recentre_from is {origin!r}"
        if orientation["method"] != "template_matching" or orientation["max_shift_angstrom"] <= 0:
            raise InputError(
                f"{where}, but centres come from orientation.method: template_matching with "
                "orientation.max_shift_angstrom > 0"
            )
        while origin is not None:
            if origin not in config["variants"] or origin in seen:
                raise InputError(
                    f"{where}; expected another variant of {list(config['variants'])}, "
                    f"not one re-centred from it (chain {' <- '.join([*seen, origin])})"
                )
            seen.append(origin)
            origin = recentre_source(config, origin)


def _check_star(config: dict, source: str) -> None:
    star, affinity = config["star"], config["affinity"]["source"]
    if not star["particles"]:
        raise InputError(f"{source}: particle_source 'star' needs star.particles (a STAR file)")
    _check_relative_path(star["particles"], f"{source}: star.particles")
    if not classes_from_structures(config) and affinity in ("soap", "map_cc"):
        raise InputError(
            f"{source}: affinity.source = {affinity!r} needs a structure per class; list them "
            "in structures.ids/files (and leave star.classes empty), or use affinity.source: "
            "csv with your own prior (or uniform, or none: no prior)"
        )


def _check_tomograms(config: dict, source: str) -> None:
    """Simulated tomograms must hold a particle and its extraction box along every axis."""
    tomograms = config["tomograms"]
    if tomograms["particles_per_class"] == 0 and tomograms["unseen_particles_per_class"] == 0:
        raise InputError(f"{source}: tomograms.particles_per_class is 0: no particle to extract")
    box = max(config["density"]["box_size_px"], config["extraction"]["box_size_px"])
    for axis in ("x", "y", "z"):
        size = tomograms[f"size_{axis}_px"]
        if size < box + 3:
            raise InputError(
                f"{source}: tomograms.size_{axis}_px = {size} cannot hold a {box}-voxel box "
                f"(density/extraction.box_size_px) inside it; expected >= {box + 3}"
            )


def _check_relative_path(path: str, where: str) -> None:
    """Refuse paths that smuggle shell syntax or control characters into rule commands."""
    if any(ch in path for ch in ";|&`$<>") or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise InputError(f"{where} = {path!r} contains characters not allowed in a path")


def class_names(config: Mapping) -> list[str]:
    """The study's classes in order: PDB IDs (lower case) then the user's own files; for a STAR
    study its ``star.classes`` when given; a copick study's objects; or the characters, seen
    then unseen."""
    if config.get("particle_source") == "copick":
        return [o.name for o in copick.study_objects(config)]
    if config.get("particle_source") == "characters":
        return list(config["characters"]["seen"]) + list(config["characters"]["unseen"])
    if config.get("particle_source") == "star" and config["star"]["classes"]:
        return list(config["star"]["classes"])
    structures = config["structures"]
    return [i.lower() for i in structures["ids"]] + list(structures["files"])


def classes_from_structures(config: Mapping) -> bool:
    """Whether each class has a structure (and so a density map) behind it."""
    source = config.get("particle_source")
    if source == "copick":
        return copick.has_structures(config)
    return source != "characters" and not (source == "star" and config["star"]["classes"])


def unseen_classes(config: Mapping) -> list[str]:
    """Classes held out of training, spelled as in :func:`class_names`."""
    if config.get("particle_source") == "characters":
        return list(config["characters"]["unseen"])
    names = class_names(config)
    lowered = {n.lower(): n for n in names}
    held_out = list(config["structures"]["unseen"])
    source = config.get("particle_source")
    if source in ("star", "copick"):
        held_out += [u for u in config[source]["unseen"] if u not in held_out]
    return [lowered.get(u.lower(), u) for u in held_out]


def variant_sections(config: Mapping, variant: str) -> tuple[dict, dict]:
    """The merged (model, training) sections of one variant."""
    override = config["variants"][variant]
    return (
        deep_merge(config["model"], override.get("model", {})),
        deep_merge(config["training"], override.get("training", {})),
    )
