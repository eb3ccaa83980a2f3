"""`python -m benchmarks`: the benchmarks, each with the first line of its docstring (read, not imported)."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, str]:
    """`{module: first docstring line}` of every module here that defines `main` (the runnable benchmarks)."""
    out = {}
    for path in sorted(HERE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body) and path.stem != "__main__":
            module = ".".join(path.relative_to(HERE.parent).with_suffix("").parts)
            out[module] = (ast.get_docstring(tree) or "").splitlines()[0]
    return out


if __name__ == "__main__":
    for name, line in benchmarks().items():
        print(f"python -m {name:<34} {line}")
