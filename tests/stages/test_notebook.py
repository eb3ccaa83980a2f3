"""The results notebook runs top to bottom on a real pipeline output."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_explore_results_notebook_executes(project, monkeypatch):
    dest, _ = project
    monkeypatch.setenv("TUNEBENCH_PROJECT", str(dest))
    nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(dest)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "trial runs of" in text and "benchmark" in text
