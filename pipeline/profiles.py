"""Profiles: whole `params.yaml` files kept in `profiles/`, switched with `tunebench profile <name>`.

DVC reads only `params.yaml`, so a profile is applied by copying its file there (atomically, after
validating it) and regenerating `dvc.yaml`'s `plots:` section for its benchmarks. `params.yaml`
is always byte-identical to one profile unless the user edited it; such local edits are never
overwritten silently: the switch refuses, or with `force` keeps them as `params.yaml.bak`.
`profiles/default.yaml` is the shipped `params.yaml` (a test keeps the two identical).
No TensorFlow, MLflow or Optuna is imported here.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import fileio
from pipeline.config import load_params
from pipeline.errors import ConfigError

PROFILES = Path("profiles")
BACKUP_SUFFIX = ".bak"


def available(folder: Path = PROFILES) -> dict[str, Path]:
    """Profile name -> file, for every `<name>.yaml` in `folder`."""
    return {p.stem: p for p in sorted(Path(folder).glob("*.yaml"))}


def current(params_path: Path | str = "params.yaml", folder: Path = PROFILES) -> str | None:
    """The profile `params_path` is a copy of, or None (local edits, or no such file)."""
    params_path = Path(params_path)
    if not params_path.is_file():
        return None
    text = params_path.read_bytes()
    return next((name for name, p in available(folder).items() if p.read_bytes() == text), None)


def switch(
    name: str,
    *,
    params_path: Path | str = "params.yaml",
    dvc_yaml: Path | str = "dvc.yaml",
    folder: Path = PROFILES,
    force: bool = False,
) -> dict:
    """Make `params_path` a copy of profile `name` and regenerate `dvc_yaml`'s plots for it.

    Returns:
        `{"profile", "previous" (a profile name or None), "backup" (path or None), "datasets", "benchmarks"}`.

    Raises:
        ConfigError: unknown profile; the profile fails validation (nothing is written); or
            `params_path` has edits that match no profile and `force` is not set.
    """
    from pipeline import dvc_plots  # noqa: PLC0415 - imports the dataset catalog, not TensorFlow

    profiles = available(folder)
    if name not in profiles:
        raise ConfigError(f"{folder}/{name}.yaml: no such profile; profiles here: {', '.join(profiles) or 'none'}")
    source = profiles[name]
    params = load_params(source)  # raises ConfigError naming profiles/<name>.yaml and the key
    params_path, dvc_yaml = Path(params_path), Path(dvc_yaml)
    previous = current(params_path, folder)
    backup = None
    if params_path.is_file() and previous is None:
        if not force:
            raise ConfigError(
                f"{params_path}: has local edits that match no profile in {folder}/ ({', '.join(profiles)}); "
                f"save them as a profile (cp {params_path} {folder}/<name>.yaml) or rerun with --force "
                f"(keeps them as {params_path}{BACKUP_SUFFIX})"
            )
        backup = params_path.with_name(params_path.name + BACKUP_SUFFIX)
        fileio.write_bytes_atomic(backup, params_path.read_bytes())
    fileio.write_bytes_atomic(params_path, source.read_bytes())
    if dvc_yaml.is_file():
        text = dvc_yaml.read_text(encoding="utf-8")
        new = dvc_plots.render(text, params)
        if new != text:
            fileio.write_text_atomic(dvc_yaml, new)
    return {"profile": name, "previous": previous, "backup": str(backup) if backup else None,
            "datasets": list(params.datasets), "benchmarks": list(params.benchmarks)}  # fmt: skip
