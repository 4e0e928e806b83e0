"""The study schema: the one home of every setting's name, default and bounds.

``config.schema.yaml`` (beside this module; ``workflow/schemas/`` links to it) describes a study
config. Two readers use it:

- the workflow validates a whole config file with :func:`validate_against` (defaults filled in);
- each ``*Config`` dataclass of the library is made from its section by
  :func:`section_dataclass`: one field per key, with the key's name and default, checked against
  the key's bounds when it is built. A library call with bad settings is refused with the same
  one-line message as the YAML would be, and a key added to the schema is a field at once. The
  dataclasses check by hand only what a schema cannot say (relations between fields).

Types are strict: an ``integer`` is a Python/numpy integer (never ``2.0``, never a bool), and a
``number`` is a finite int or float (never NaN or infinity, never a bool).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

from cryoavae.core.errors import InputError
from cryoavae.core.yaml_io import load_yaml

SCHEMA_PATH = Path(__file__).parents[1] / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    """The parsed schema (cached; callers must not modify it)."""
    return load_yaml(SCHEMA_PATH)


# --------------------------------------------------------------------------- the validator


def _is_integer(_checker, value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(_checker, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value) if isinstance(value, float) else True


_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"integer": _is_integer, "number": _is_number}
)


def _not_above(validator, pairs, instance, subschema):
    """Our keyword ``notAbove: [[low, high], ...]``: key ``low`` may not exceed key ``high``."""
    if not isinstance(instance, dict):
        return
    for low, high in pairs:
        a, b = instance.get(low), instance.get(high)
        if _is_number(None, a) and _is_number(None, b) and a > b:
            yield jsonschema.ValidationError(f"{low} = {a!r} is larger than {high} = {b!r}")


def _extend(validator_class: type, validators: dict | None = None) -> type:
    return jsonschema.validators.extend(
        validator_class, {"notAbove": _not_above, **(validators or {})}, type_checker=_TYPES
    )


def _with_defaults(validator_class: type) -> type:
    """Extend a validator so that ``default`` values are filled into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, subschema)

    return _extend(validator_class, {"properties": set_defaults})


_FillingValidator = _with_defaults(jsonschema.Draft202012Validator)
_CheckingValidator = _extend(jsonschema.Draft202012Validator)


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


@functools.cache
def _filling_validator() -> jsonschema.protocols.Validator:
    root = schema()
    return _FillingValidator(_hoist_ref_defaults(copy.deepcopy(root), root))


# --------------------------------------------------------------------------- one-line messages


def _yaml_path(error: jsonschema.ValidationError, prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<top level>"


def _accepted(error: jsonschema.ValidationError) -> str:
    """What the schema accepts, in words, for the failing keyword."""
    kind, value = error.validator, error.validator_value
    if kind == "type":
        kinds = value if isinstance(value, list) else [value]
        notes = {"integer": "a whole number, not 2.0", "number": "a finite number"}
        extra = "; ".join(notes[k] for k in kinds if k in notes)
        return f"type {value}" + (f" ({extra})" if extra else "")
    words = {
        "enum": f"one of {value}",
        "minimum": f">= {value}",
        "maximum": f"<= {value}",
        "exclusiveMinimum": f"> {value}",
        "exclusiveMaximum": f"< {value}",
        "pattern": f"a string matching {value}",
        "minItems": f"at least {value} items",
        "maxItems": f"at most {value} items",
        "uniqueItems": "no repeated items",
        "minProperties": f"at least {value} entries",
        "minLength": f"at least {value} characters",
        "maxLength": f"at most {value} characters",
    }
    return words.get(kind, f"{kind} {value}")


def one_line(error: jsonschema.ValidationError, source: str, prefix: str = "") -> str:
    """The first violation as one line: ``source: path = value is invalid; expected ...``
    (``prefix`` is put before the path; without a ``source`` the line starts with the path)."""
    where = _yaml_path(error, prefix)
    lead = f"{source}: " if source else ""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        instance = error.instance if isinstance(error.instance, dict) else {}
        extra = sorted(set(instance) - set(allowed), key=str)
        key = f"{'' if where == '<top level>' else where + '.'}{extra[0] if extra else '?'}"
        hint = f"; known keys: {allowed}" if allowed else ""
        return f"{lead}unknown key {key}{hint}"
    if error.validator == "required":
        return f"{lead}{where}: {error.message}"
    if error.validator == "notAbove":
        return f"{lead}{'' if where == '<top level>' else where + '.'}{error.message}"
    if error.validator == "propertyNames":
        return f"{lead}{where}: name {error.instance!r} is not allowed (letters, digits, _.-)"
    value = repr(error.instance)
    if len(value) > 80:
        value = value[:77] + "..."
    return f"{lead}{where} = {value} is invalid; expected {_accepted(error)}"


def _raise_first(validator, instance, source: str, prefix: str = "") -> None:
    errors = list(validator.iter_errors(instance))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise InputError(one_line(best, source, prefix))


def validate_against(instance: dict, source: str) -> dict:
    """Fill defaults into a whole study config and raise InputError on the first violation."""
    _raise_first(_filling_validator(), instance, source)
    return instance


# --------------------------------------------------------------------------- sections


def section_schema(section: str) -> dict:
    """The subschema of a dotted ``section`` (``"training"``, ``"simulation.ctf"``,
    ``"training.beta"``), following ``$ref`` and ``allOf`` into ``$defs``."""
    root = schema()
    node: dict = root
    for part in section.split("."):
        node = _resolve(node, root)["properties"][part]
    return _resolve(node, root)


def _resolve(node: dict, root: dict) -> dict:
    while True:
        if "$ref" in node:
            target = root
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            node = target
        elif "allOf" in node and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            return node


def default(section: str, key: str) -> Any:
    """The schema's default for ``section.key``; lists become tuples (dataclass fields are
    immutable)."""
    value = copy.deepcopy(section_schema(section)["properties"][key]["default"])
    return tuple(value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, numpy scalars kept: what YAML would have given."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _section_validator(section: str):
    return _CheckingValidator({**section_schema(section), "$defs": schema().get("$defs", {})})


def check_fields(obj: Any, section: str, label: str | None = None) -> None:
    """Check a config dataclass's fields that are keys of ``section`` against the schema.

    Fields the schema does not list (filled in by the workflow, e.g. ``ndim``) are the
    dataclass's own business. Raises InputError: ``label.key = value is invalid; expected ...``.
    """
    properties = section_schema(section).get("properties", {})
    values = {
        f.name: _plain(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.name in properties
    }
    _raise_first(_section_validator(section), values, "", prefix=label or section)


def from_mapping(cls: type, values: Mapping[str, Any], where: str, **converters) -> Any:
    """Build config dataclass ``cls`` from a YAML mapping; unknown keys raise InputError.

    ``converters`` map a field name to a function applied to its value first (e.g. a nested
    section's ``from_dict``).
    """
    if not isinstance(values, Mapping):
        raise InputError(f"{where} = {values!r} is invalid; expected a mapping of settings")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; known keys: {sorted(known)}")
    values = dict(values)
    for name, convert in converters.items():
        if name in values:
            values[name] = convert(values[name])
    return cls(**values)


# --------------------------------------------------------------------------- config dataclasses

_PYTHON_TYPES = {
    "integer": int,
    "number": float,
    "string": str,
    "boolean": bool,
    "array": tuple,
    "object": dict,
    "null": type(None),
}


def _python_type(node: dict) -> Any:
    kinds = node.get("type", "object")
    types = [_PYTHON_TYPES[k] for k in (kinds if isinstance(kinds, list) else [kinds])]
    return functools.reduce(lambda a, b: a | b, types)


def section_dataclass(
    section: str,
    *,
    keys: Sequence[str] | None = None,
    nested: Mapping[str, type] | None = None,
    extra: Sequence[tuple[str, type, Any]] = (),
    label: str | None = None,
) -> type:
    """A frozen dataclass with one field per key of ``section`` (or of ``keys``, in that order):
    the key's name, its schema default (lists as tuples) and its bounds, checked on creation.

    ``nested`` gives the config class of sub-sections (a mapping given for one is converted, and
    its unknown keys refused); ``extra`` adds ``(name, type, default)`` fields the workflow fills
    in (checked by the subclass). Subclass the result to add a docstring, properties and
    relational checks in ``__post_init__`` (call ``super().__post_init__()`` first). Errors name
    ``label`` (default: the section) and the key.
    """
    properties = section_schema(section)["properties"]
    nested = dict(nested or {})
    label = label or section
    required, optional = [], []
    for name in keys if keys is not None else properties:
        node = properties[name]
        if name in nested:
            factory = functools.partial(
                nested[name].from_dict, node.get("default", {}), where=f"{label}.{name}"
            )
            optional.append((name, nested[name], dataclasses.field(default_factory=factory)))
        elif isinstance(node.get("default"), dict):  # a mapping: a fresh copy per instance
            factory = functools.partial(default, section, name)
            optional.append((name, dict, dataclasses.field(default_factory=factory)))
        elif "default" in node:
            optional.append((name, _python_type(node), default(section, name)))
        else:
            required.append((name, _python_type(node)))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in nested and isinstance(value, Mapping):
                value = nested[f.name].from_dict(value, where=f"{label}.{f.name}")
            elif isinstance(value, list):
                value = tuple(value)
            object.__setattr__(self, f.name, value)
        check_fields(self, section, label)

    def from_dict(cls, values: Mapping[str, Any], where: str | None = None):
        """Build from a YAML mapping; an unknown key raises InputError naming ``where``."""
        where = where or label
        try:
            return from_mapping(cls, values, where)
        except InputError as error:  # checks inside name the section; say where it was
            raise InputError(str(error).replace(f"{label}.", f"{where}.", 1)) from None

    return dataclasses.make_dataclass(
        f"{label.replace('.', '_')}_fields",
        [*required, *extra, *optional],
        frozen=True,
        namespace={"__post_init__": __post_init__, "from_dict": classmethod(from_dict)},
    )
