"""Pydantic's validation errors as the lines a user reads: `<file>: <key.path>: bad value <v>: <what is allowed>`."""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from pipeline.config.base import NAME_RULE, Problems
from pipeline.config.params import Params
from pipeline.redaction import redact

_MESSAGES = {  # pydantic error type -> what to write instead of its message
    "int_type": "expected an integer (e.g. 5)",
    "float_type": "expected a number (e.g. 0.5)",
    "bool_type": "expected true or false",
    "string_type": "expected a string (text)",
    "finite_number": "expected a finite number (.nan, .inf and numbers beyond 1.8e308 are not allowed)",
    "string_pattern_mismatch": NAME_RULE,
    "dict_type": "expected a mapping (`key: value` entries)",
    "model_type": "expected a mapping (`key: value` entries)",
    "model_attributes_type": "expected a mapping (`key: value` entries)",
    "list_type": "expected a list (`[a, b]` or `- a` lines)",
}

_REPR = reprlib.Repr()  # as `repr` for the short values `shown` prints whole; cut short (in bounded time) beyond
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 4, 16, 16, 200, 200


def _message(e: dict) -> str:
    """One pydantic error as what is allowed / what to do."""
    kind, value, loc = e["type"], e.get("input"), e["loc"]
    if kind == "string_pattern_mismatch" and "sha256" in loc:
        return "expected the file's SHA-256: 64 lowercase hex digits (`sha256sum FILE`)"
    wrong_kind = kind in ("literal_error", "model_type", "model_attributes_type", "dict_type")
    if wrong_kind and len(loc) > 1 and loc[-2] == "source" and loc[-1] in ("builtin", "custom"):
        return "expected `builtin` or a mapping {url or path, sha256, format, task[, target]}"
    if kind == "extra_forbidden":
        known = _keys_at(loc)
        return f"unknown key (a typo?); allowed here: {', '.join(known)}" if known else "unknown key (a typo?)"
    if kind in ("too_short", "too_long"):
        n = (e.get("ctx") or {}).get("min_length" if kind == "too_short" else "max_length")
        return f"expected at {'least' if kind == 'too_short' else 'most'} {n} entr{'y' if n == 1 else 'ies'}"
    msg = _MESSAGES.get(kind, e["msg"])
    if kind in ("int_type", "float_type") and isinstance(value, bool):
        msg += "; true/false is not a number"
    elif kind == "int_type" and isinstance(value, float):
        msg += "; fractions are not allowed here"
    elif kind in ("int_type", "float_type") and isinstance(value, str):
        msg += "; YAML read it as text (quotes, or a typo?)"
    msg = msg.removeprefix("Value error, ").replace("Input should be greater", "expected a value greater")
    return msg.replace("Input should be less", "expected a value less").replace("Input should be", "expected")


def _keys_at(loc: tuple) -> list[str]:
    """The keys the schema allows in the mapping holding `loc[-1]` (empty when it cannot tell)."""
    t: Any = Params
    for i, part in enumerate(loc[:-1]):
        if part in ("builtin", "custom") and i > 0 and loc[i - 1] == "source":
            continue
        t = _model_of(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            if str(part) not in t.model_fields:
                return []
            t = t.model_fields[str(part)].annotation
        elif get_origin(t) in (dict, list):
            t = get_args(t)[-1] if get_origin(t) is dict else get_args(t)[0]
        else:
            return []
    t = _model_of(t)
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


def _model_of(t: Any) -> Any:
    """`t` without Annotated / Optional wrappers; of a union, its schema class member."""
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    if get_origin(t) in (Union, UnionType):
        members = [_model_of(a) for a in get_args(t) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if models else members[0]
    return t


def _key(loc: tuple) -> str:
    parts = []
    for i, p in enumerate(loc):
        p = str(p)
        if p.startswith(("literal[", "function-")) or p == "[key]":
            continue
        if p in ("builtin", "custom") and i > 0 and loc[i - 1] == "source":
            continue  # the tag of the `source` union
        parts.append(p)
    return ".".join(parts) or "<top>"


def shown(value: Any) -> str:
    """`value` as the user wrote it in YAML (true, null, .nan), long mappings shortened, passwords masked."""
    yaml_words = {True: "true", False: "false", None: "null"}
    if value is None or isinstance(value, bool):
        return yaml_words[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text = _REPR.repr(value)  # bounded: a mapping that aliases expand can hold millions of values
    if isinstance(value, dict | list) and len(text) > 80:
        text = "{...}" if isinstance(value, dict) else "[...]"
    return redact(text)


def format_error(path: Path, err: ValidationError) -> str:
    """One line per problem of `err`, for the file at `path`."""
    lines = []
    for e in err.errors():
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, Problems):
            for rel, value, msg in ctx_err.problems:
                lines.append(f"{path}: {_key((*e['loc'], *rel))}: bad value {shown(value)}: {msg}")
            continue
        if e["type"] == "missing":
            lines.append(f"{path}: {_key(e['loc'])}: missing: a required key; add it (see docs/configuration.md)")
            continue
        lines.append(f"{path}: {_key(e['loc'])}: bad value {shown(e.get('input'))}: {_message(e)}")
    return "\n".join(lines)
