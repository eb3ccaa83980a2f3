"""Reading `params.yaml`: PyYAML's safe loader, refusing a key given twice and reading `1e-3` as a number."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading `1e-3` as a number (YAML 1.2 and DVC do; YAML 1.1 reads text)."""


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
        ConfigError: not valid YAML (with line and column), or duplicate keys (with line and key path).
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if lines := _duplicates(node, (), Path(path), set()):
            raise ConfigError("\n".join(lines))
        return loader.construct_document(node)
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
