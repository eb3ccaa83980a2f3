"""The test tiers (markers in pyproject.toml): a test on the session fixture `project`, a `dvc repro`,
is refused unless it is marked `slow` and `dvc`, so the fast tier (`-m "not slow"`) never runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import ROOT

BARE = "def test_bare(project):\n    pass\n"
MARKED = "import pytest\n\npytestmark = [pytest.mark.slow, pytest.mark.dvc]\n\n\ndef test_marked(project):\n    pass\n"


def _collect(folder, name: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(folder), name]  # fmt: skip
    return subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=300)


def test_a_test_on_the_dvc_repro_project_must_be_marked_slow_and_dvc(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path)
    (tmp_path / "test_bare.py").write_text(BARE)
    (tmp_path / "test_marked.py").write_text(MARKED)
    bare = _collect(tmp_path, "test_bare.py")
    assert bare.returncode == 4, bare.stdout + bare.stderr  # a usage error: nothing runs
    assert "test_bare.py::test_bare uses the fixture `project` (dvc repro): mark it slow and dvc" in bare.stderr
    marked = _collect(tmp_path, "test_marked.py")
    assert marked.returncode == 0 and "1 test collected" in marked.stdout, marked.stdout + marked.stderr
