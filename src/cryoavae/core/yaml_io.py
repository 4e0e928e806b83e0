"""Reading YAML files strictly: safe types only, no repeated keys, no alias bombs.

``yaml.safe_load`` never runs code, but it lets a repeated key silently replace the first one,
and it builds a "billion laughs" file (aliases of aliases of lists) as a small graph of shared
objects that anything walking it (validation, merging) expands into billions of values. Both are
refused here with one line naming the file, before the result reaches the workflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from cryoavae.core.errors import InputError

#: Values a file may expand to once its aliases are followed: real study configs have hundreds.
MAX_EXPANDED_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (merge keys ``<<`` may be
    overridden: that is what they are for)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first_line:
                        raise yaml.constructor.ConstructorError(
                            problem=f"key {key!r} is repeated (lines {first_line[key]} and "
                            f"{line}): the second would silently replace the first",
                            problem_mark=key_node.start_mark,
                        )
                    first_line[key] = line
                except TypeError:  # an unhashable key: the base class reports it
                    break
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Number of values ``node`` stands for once every alias is followed (memoised, so shared
    nodes cost one visit); a node that contains itself raises."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise yaml.constructor.ConstructorError(
            problem="an alias refers to a value that contains it (a recursive structure)",
            problem_mark=node.start_mark,
        )
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, active) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _expanded_size(key_node, memo, active)
            size += _expanded_size(value_node, memo, active)
    active.discard(key)
    memo[key] = size
    return size


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file with safe types only (never ``yaml.load``).

    Raises:
        InputError: one line naming the file: missing, not valid YAML, a repeated key, or
            aliases that expand to more than :data:`MAX_EXPANDED_NODES` values.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as text ({exc})") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set())
        if size > MAX_EXPANDED_NODES:
            raise InputError(
                f"{path}: its aliases expand to {size:.3g} values (more than "
                f"{MAX_EXPANDED_NODES:,}); a study config needs a few hundred, so it is refused"
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(exc.problem or exc.context or exc).split())
        raise InputError(f"{path}: not valid YAML ({where}{what})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to be a config") from None
    finally:
        loader.dispose()
