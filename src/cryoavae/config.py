"""Study configuration: JSON-schema validation with defaults, one-line errors, model variants.

The schema (``workflow/schemas/config.schema.yaml``) is the single place where defaults and bounds
live. :func:`validate_config` fills the defaults in place and turns the first violation into one
line naming the YAML path, the value received and what is accepted, so a bad config stops before
any job runs.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import InputError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def load_yaml(path: str | os.PathLike) -> Any:
    """Read YAML safely (never ``yaml.load``), with a one-line error naming the file."""
    path = Path(path)
    try:
        with open(path) as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


def _with_defaults(validator_class: type) -> type:
    """Extend a jsonschema validator so that ``default`` values are filled into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _hoist_ref_defaults(node, root: Mapping):
    """Copy a local ``$ref`` target's default beside the ``$ref`` so defaults fill through refs."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and "default" not in node:
            target = root
            for part in ref[2:].split("/"):
                target = target[part]
            if "default" in target:
                node["default"] = copy.deepcopy(target["default"])
        for value in node.values():
            _hoist_ref_defaults(value, root)
    elif isinstance(node, list):
        for value in node:
            _hoist_ref_defaults(value, root)
    return node


def _yaml_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<top level>"


def _accepted(error: jsonschema.ValidationError) -> str:
    """What the schema accepts, in words, for the failing keyword."""
    kind, value = error.validator, error.validator_value
    words = {
        "enum": lambda: f"one of {value}",
        "type": lambda: f"type {value}",
        "minimum": lambda: f">= {value}",
        "maximum": lambda: f"<= {value}",
        "exclusiveMinimum": lambda: f"> {value}",
        "exclusiveMaximum": lambda: f"< {value}",
        "pattern": lambda: f"a string matching {value}",
        "minItems": lambda: f"at least {value} items",
        "maxItems": lambda: f"at most {value} items",
        "uniqueItems": lambda: "no repeated items",
        "minProperties": lambda: f"at least {value} entries",
        "minLength": lambda: f"at least {value} characters",
    }
    return words[kind]() if kind in words else f"{kind} {value}"


def _one_line(error: jsonschema.ValidationError, source: str) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = (
            sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        )
        where = _yaml_path(error)
        prefix = "" if where == "<top level>" else f"{where}."
        hint = f"; known keys: {allowed}" if allowed else ""
        return f"{source}: unknown key {prefix}{extra[0] if extra else '?'}{hint}"
    if error.validator == "required":
        return f"{source}: {error.message}"
    if error.validator == "propertyNames":
        name = error.instance
        return f"{source}: {_yaml_path(error)}: name {name!r} is not allowed (letters, digits, _.-)"
    return (
        f"{source}: {_yaml_path(error)} = {error.instance!r} is invalid; "
        f"expected {_accepted(error)}"
    )


def validate_against(instance: dict, schema: Mapping, source: str) -> dict:
    """Fill defaults into ``instance`` and raise :class:`InputError` on the first violation."""
    validator = _Validator(_hoist_ref_defaults(copy.deepcopy(dict(schema)), schema))
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise InputError(_one_line(best, source))
    return instance


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


def validate_config(config: dict, schema_path: str | os.PathLike, source: str = "config") -> dict:
    """Validate a study config in place (defaults filled) and check what a schema cannot.

    Each variant's ``model``/``training`` overrides are merged onto the base sections and the
    result validated against the same sub-schemas, so a typo inside a variant fails as loudly as
    one in the base section.
    """
    schema = load_yaml(schema_path)
    validate_against(config, schema, source)
    defs = dict(schema["$defs"])
    for name, override in config["variants"].items():
        for section in ("model", "training"):
            merged = deep_merge(config[section], override.get(section, {}))
            sub = {"$defs": defs, **defs[section]}
            validate_against(merged, sub, f"{source}: variants.{name}.{section}")
    _check_study(config, source)
    return config


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
            f"expected one of ['soap', 'map_cc', 'csv']"
        )
    if particle_source == "extract":
        if not config["extraction"]["tomograms"]:
            raise InputError(f"{source}: particle_source 'extract' needs extraction.tomograms")
        for k, entry in enumerate(config["extraction"]["tomograms"]):
            for key in ("tomogram", "particles"):
                _check_relative_path(entry[key], f"{source}: extraction.tomograms[{k}].{key}")
    if len(names) < 2:
        raise InputError(
            f"{source}: structures.ids/files name {len(names)} classes; a study needs at least 2"
        )
    if len(set(names)) != len(names):
        raise InputError(f"{source}: structures.ids and structures.files repeat a class name")
    for name in structures["unseen"]:
        if name.lower() not in names and name not in names:
            raise InputError(
                f"{source}: structures.unseen names {name!r}, which is not a class of this study "
                f"(classes: {names})"
            )
    seen = [n for n in names if n not in unseen_classes(config)]
    if len(seen) < 2:
        raise InputError(f"{source}: structures.unseen leaves {len(seen)} seen classes; need >= 2")
    for name, path in structures["files"].items():
        _check_relative_path(path, f"{source}: structures.files.{name}")
    for name, path in config["apply"]["particle_sets"].items():
        _check_relative_path(path, f"{source}: apply.particle_sets.{name}")
    ctf = config["simulation"]["ctf"]
    if ctf["defocus_min_um"] > ctf["defocus_max_um"]:
        raise InputError(
            f"{source}: simulation.ctf.defocus_min_um = {ctf['defocus_min_um']} is larger than "
            f"defocus_max_um = {ctf['defocus_max_um']}"
        )
    if config["affinity"]["source"] == "csv" and not config["affinity"]["csv_path"]:
        raise InputError(f"{source}: affinity.source = 'csv' needs affinity.csv_path")


def _check_relative_path(path: str, where: str) -> None:
    """Refuse paths that smuggle shell syntax or control characters into rule commands."""
    if any(ch in path for ch in "\n\r\0;|&`$<>"):
        raise InputError(f"{where} = {path!r} contains characters not allowed in a path")


def class_names(config: Mapping) -> list[str]:
    """The study's classes in order: PDB IDs (lower case) then the user's own files; or the
    characters, seen then unseen."""
    if config.get("particle_source") == "characters":
        return list(config["characters"]["seen"]) + list(config["characters"]["unseen"])
    structures = config["structures"]
    return [i.lower() for i in structures["ids"]] + list(structures["files"])


def unseen_classes(config: Mapping) -> list[str]:
    if config.get("particle_source") == "characters":
        return list(config["characters"]["unseen"])
    names = class_names(config)
    lowered = {n.lower(): n for n in names}
    return [lowered.get(u.lower(), u) for u in config["structures"]["unseen"]]


def variant_sections(config: Mapping, variant: str) -> tuple[dict, dict]:
    """The merged (model, training) sections of one variant."""
    override = config["variants"][variant]
    return (
        deep_merge(config["model"], override.get("model", {})),
        deep_merge(config["training"], override.get("training", {})),
    )
