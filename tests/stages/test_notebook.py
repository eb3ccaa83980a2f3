"""The results notebook runs top to bottom on a real pipeline output and shows its figures inline."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.dvc]


def test_explore_results_notebook_executes_and_shows_figures(project, monkeypatch):
    dest, _ = project
    monkeypatch.setenv("TUNEBENCH_PROJECT", str(dest))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # what a fresh Jupyter kernel gets
    nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(dest)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "trial runs of" in text and "benchmark" in text
    assert "Agg" not in text and "non-interactive" not in text  # no "cannot show the figure" warning
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    n_benchmarks = text.count("trial runs of")
    assert n_benchmarks >= 5 and len(images) == n_benchmarks + 1, "one figure per benchmark + the Optuna history"
    assert all(len(o["data"]["image/png"]) > 5_000 for o in images)
