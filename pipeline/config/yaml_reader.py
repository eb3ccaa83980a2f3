"""Reading `params.yaml`: PyYAML's safe loader, refusing a key given twice and reading `1e-3` as a number.

Bounded: at most `MAX_DEPTH` levels of nesting and `MAX_VALUES` values once aliases are expanded (an
"alias bomb" of a few lines would otherwise expand to billions).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError


MAX_DEPTH = 50  # levels of nesting below the top
MAX_VALUES = 100_000  # values (mappings, lists and scalars) once aliases are expanded


class _Bound(Exception):
    """The document passes a bound: `(key path, what)`."""


def _key(path: list) -> str:
    """The key path to name for a bound: its first mapping keys (at most 3, none inside a list)."""
    keys = []
    for part in path[:3]:
        if not isinstance(part, str):
            break
        keys.append(part)
    return ".".join(keys) or "<top>"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading `1e-3` as a number (YAML 1.2 and DVC do; YAML 1.1 reads text),
    refusing nesting deeper than `MAX_DEPTH` before PyYAML's recursive composer runs out of stack."""

    def __init__(self, stream):
        super().__init__(stream)
        self.key_path: list = []
        self.open_anchors: set[str] = set()  # anchors of the values being composed

    def compose_node(self, parent, index):
        if parent is not None:  # not the document's top
            self.key_path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        try:
            if len(self.key_path) > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise _Bound(list(self.key_path), f"nested more than {MAX_DEPTH} levels deep (line {line}); flatten it")
            if isinstance(event, yaml.AliasEvent) and anchor in self.open_anchors:
                raise _Bound(list(self.key_path), f"the alias *{anchor} refers to the value that holds it; remove it")
            if anchor is not None and not isinstance(event, yaml.AliasEvent):
                self.open_anchors.add(anchor)
            return super().compose_node(parent, index)
        finally:
            if anchor is not None and not isinstance(event, yaml.AliasEvent):
                self.open_anchors.discard(anchor)
            if parent is not None:
                self.key_path.pop()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _expanded(top: yaml.Node) -> dict[int, tuple[int, int]]:
    """`{id(node): (values, levels below it)}` of every node once aliases are expanded (without expanding them)."""
    done: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(top, False)]
    while stack:  # depth first, without recursion: aliases may nest deeper than the text
        node, finished = stack.pop()
        if finished:
            sizes = [done[id(c)] for c in _children(node)]
            done[id(node)] = (1 + sum(n for n, _ in sizes), 1 + max((d for _, d in sizes), default=-1))
        elif id(node) not in done:
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node))
    return done


def _check_bounds(top: yaml.Node) -> None:
    """Refuse more than `MAX_VALUES` values or `MAX_DEPTH` levels once aliases are expanded, naming the key.

    Raises:
        _Bound: the key path (the mapping keys leading to the largest or deepest value) and what is wrong.
    """
    done = _expanded(top)
    for i, (bound, what) in enumerate(((MAX_VALUES, f"more than {MAX_VALUES} values"),
                                       (MAX_DEPTH, f"more than {MAX_DEPTH} levels of nesting"))):  # fmt: skip
        if done[id(top)][i] <= bound:
            continue
        path, node = [], top
        while isinstance(node, yaml.MappingNode) and node.value:  # down to the key holding the excess
            k, v = max(node.value, key=lambda kv: done[id(kv[1])][i])
            if done[id(v)][i] + (len(path) + 1 if i else 0) <= bound:
                break
            path.append(k.value if isinstance(k, yaml.ScalarNode) else "?")
            node = v
        raise _Bound(path, f"holds {what} once YAML aliases (`*name`) are expanded; write it out plainly")


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _duplicates(node: yaml.Node, path: tuple, file: Path, seen_nodes: set) -> list[str]:
    """One line per key given twice in the same mapping, at any depth."""
    if id(node) in seen_nodes:
        return []
    seen_nodes.add(id(node))
    lines = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
            if key != "<<":
                line = k.start_mark.line + 1
                if key in first:
                    lines.append(
                        f"{file}: {'.'.join(map(str, (*path, key)))}: duplicate key at line {line} "
                        f"(first at line {first[key]}): YAML would keep only the last; remove or rename one"
                    )
                first.setdefault(key, line)
            lines += _duplicates(v, (*path, key), file, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines += _duplicates(item, (*path, i), file, seen_nodes)
    return lines


def read_yaml(text: str, path: Path | str = "params.yaml") -> Any:
    """Parse YAML text, refusing a key given twice in a mapping (PyYAML would keep the last silently).

    Raises:
        ConfigError: not YAML text, not valid YAML (with line and column), duplicate keys (with line and key
            path), or too deep or too large once aliases are expanded (with the key path).
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as err:  # a control character: binary data, not text
        line = text.count("\n", 0, err.position) + 1
        raise ConfigError(f"{path}: <top>: not a UTF-8 YAML text file (character U+{err.character:04X} at line "
                          f"{line} is not allowed in YAML); save it as UTF-8 text") from None  # fmt: skip
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_bounds(node)
        if lines := _duplicates(node, (), Path(path), set()):
            raise ConfigError("\n".join(lines))
        return loader.construct_document(node)
    except _Bound as err:
        key, what = err.args
        raise ConfigError(f"{path}: {_key(key)}: {what}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "<top>"
        what = " ".join(x for x in (err.context, err.problem) if x)
        hint = (
            "plain values only, no `!!` tags"
            if isinstance(err, yaml.constructor.ConstructorError)
            else ("check the indentation (spaces, no tabs) and quoting there")
        )
        raise ConfigError(f"{path}: {where}: not valid YAML: {what}; {hint}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: <top>: not valid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()
