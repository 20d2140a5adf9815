"""The one YAML reader of mmdps: safe types only, no anchors or aliases, no duplicate keys.

Every config file, ``key=value`` override and dictionary value written as YAML text goes through
:func:`load_yaml` (text) or :func:`read_yaml_file` (a file). Plain ``yaml.safe_load`` has two traps for
config files:

* anchors and aliases (``&a [...]`` / ``*a``) let a 1.5 KB file expand into gigabytes (an "alias
  bomb"), which hangs the program before any check runs. A config has no use for them, so the first
  anchor or alias is refused, before anything is expanded.
* a key written twice in one mapping silently keeps the last value. Here it is an error naming both
  lines.

Errors are :class:`YAMLInputError` (a ``ValueError``) naming the source (file or override), the line
and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

__all__ = ["YAMLInputError", "YAMLSyntaxError", "load_yaml", "read_yaml_file"]


class YAMLInputError(ValueError):
    """YAML text that mmdps refuses (syntax, anchors / aliases, duplicate keys); names source, line and key."""


class YAMLSyntaxError(YAMLInputError):
    """Text that is not YAML at all (the parser's own complaint, with line and column)."""


def _where(source: str, node_or_mark: Any) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return f"{source} line {mark.line + 1}" if mark is not None else source


def _key_text(index: Any) -> str:
    if isinstance(index, ScalarNode):
        return f" (under key {index.value!r})"
    if isinstance(index, int):
        return f" (list entry {index})"
    return ""


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses anchors, aliases and duplicate mapping keys."""

    source = "<YAML text>"

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:  # an AliasEvent (*name) or a node carrying an anchor (&name)
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise YAMLInputError(
                f"{_where(self.source, event.start_mark)}: YAML {kind}{anchor}{_key_text(index)} is not allowed: "
                "anchors and aliases can expand a small file into gigabytes; write the value out in full")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if seen is not None:
                raise YAMLInputError(
                    f"{_where(self.source, key_node)}: duplicate key {key!r} (first at line {seen}); YAML would "
                    "silently keep only the last value: remove one of them")
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str = "<YAML text>") -> Any:
    """Parse YAML ``text`` with safe types, refusing anchors, aliases and duplicate keys.

    ``source`` names the text in errors (a file path, ``override 'key=value'``). Raises
    :class:`YAMLInputError` naming the source, the line and, where it applies, the key.
    """
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except YAMLInputError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YAMLSyntaxError(f"{source}{where}: YAML syntax error ({problem}); check the indentation and quoting "
                             "there") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | os.PathLike) -> Any:
    """Read and parse a UTF-8 YAML file with :func:`load_yaml` (errors name the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YAMLInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") \
            from None
    return load_yaml(text, str(path))
