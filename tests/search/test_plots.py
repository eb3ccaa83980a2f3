"""Study plots draw the dimensions the round's space has (no hyperparameter names built in)."""

from __future__ import annotations

import optuna

from pipeline.search.plots import write_study_plots

optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_the_contour_is_of_the_first_two_dimensions_of_the_space(tmp_path):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("dropout", 0, 0.5) + t.suggest_int("units", 8, 64, log=True), n_trials=4)
    names = {p.name for p in write_study_plots(study, tmp_path, ["dropout", "units"])}
    assert {"plots.html", "contour_dropout_units.png", "slice.png", "param_importances.png"} <= names
    page = (tmp_path / "plots.html").read_text()
    assert page.count("<h2>") == 4 and "<h2>contour_dropout_units</h2>" in page
    assert "<script src=" not in page and page.count("plotly.js v") == 1, "plotly.js inline, once: draws offline"
    assert not any("lr" in n for n in names)

    one = tmp_path / "one"
    one.mkdir()
    names = {p.name for p in write_study_plots(study, one, ["dropout"])}
    assert "slice.png" in names and not any(n.startswith("contour") for n in names), "one dimension: no contour"


def test_optuna_plots_warn_nothing_whatever_other_threads_do():
    """Optuna's matplotlib plots warn on every call that they are experimental; the round's plots are drawn in a
    background thread, where a `catch_warnings` block raced with other threads' and let the warning into the
    `dvc repro` log. A process-wide filter set by the import keeps them out, also inside another `catch_warnings`
    (run in a fresh interpreter: pytest resets the warning filters around each test)."""
    import subprocess
    import sys

    code = """
import warnings, matplotlib
matplotlib.use("Agg")
import optuna
from optuna.visualization import matplotlib as vmpl
import pipeline.search.plots
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
with warnings.catch_warnings(record=True) as seen:
    vmpl.plot_slice(study)
    vmpl.plot_optimization_history(study)
print(sum(issubclass(w.category, optuna.exceptions.ExperimentalWarning) for w in seen))
"""
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "0" and "experimental" not in proc.stderr, proc.stdout + proc.stderr[-2000:]
