"""Optuna visualizations of one study, as PNG (matplotlib) and one interactive HTML page (plotly).

The page carries plotly.js inline (about 4.7 MB), once for all of the round's plots, so it draws
offline (a CDN link draws nothing without the network) at the cost of one copy a round.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna

# Optuna's plot functions warn on every call that they are experimental. A process-wide filter, set when this
# module is imported (in the main thread, see round_summary), keeps them out of the logs: `catch_warnings` around
# the calls saves and restores the global filter list, which races with other threads' own `catch_warnings`.
warnings.filterwarnings("ignore", message=r".*plot_\w+ is experimental", category=optuna.exceptions.ExperimentalWarning)


def write_study_plots(study: optuna.Study, out: Path, params: list[str]) -> list[Path]:
    """Write optimization history, parameter importances, slice, and the contour of the first two dimensions,
    each as `<name>.png`, and all of them on the page `plots.html`.

    `params`: the dimensions of the round's space, in order (the shipped spaces start with
    `lr` and `l2`: their contour is `contour_lr_l2`). A plot that the study cannot support
    yet (too few completed trials) is skipped. Safe in a thread (`round_summary.in_background`) while no
    other thread draws with matplotlib.

    Returns:
        The files written.
    """
    import matplotlib  # noqa: PLC0415

    logging.getLogger("optuna.visualization").setLevel(logging.ERROR)  # no "There are no complete trials." per plot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from optuna import visualization as vis  # noqa: PLC0415
    from optuna.visualization import matplotlib as vmpl  # noqa: PLC0415

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    plots = [("optimization_history", "optimization_history", {}), ("slice", "slice", {"params": params or None})]
    if len(complete) >= 2 and params:
        plots.append(("param_importances", "param_importances", {}))
    if len(params) >= 2 and len(complete) >= 2:
        pair = params[:2]
        plots.append((f"contour_{pair[0]}_{pair[1]}", "contour", {"params": pair}))
    written: list[Path] = []
    parts: list[str] = []  # the page's figures; the first carries plotly.js
    for name, fn, kwargs in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = getattr(vis, f"plot_{fn}")(study, **kwargs)
                parts.append(f"<h2>{name}</h2>" + figure.to_html(full_html=False, include_plotlyjs=not parts))
                ax = getattr(vmpl, f"plot_{fn}")(study, **kwargs)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
                fig.savefig(out / f"{name}.png", dpi=80, bbox_inches="tight")
                plt.close(fig)
                written.append(out / f"{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            (out / f"{name}.skipped.txt").write_text(f"{name} not drawn: {exc}\n")
            written.append(out / f"{name}.skipped.txt")
    if parts:
        title = f"<title>{study.study_name}</title>"
        (out / "plots.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>{title}</head><body>"
                                        + "".join(parts) + "</body></html>")  # fmt: skip
        written.append(out / "plots.html")
    return written
