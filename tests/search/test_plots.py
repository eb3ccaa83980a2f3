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
