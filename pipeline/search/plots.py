"""Optuna visualizations of one study, as PNG (matplotlib) and interactive HTML (plotly)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna


def write_study_plots(study: optuna.Study, out: Path, params: list[str]) -> list[Path]:
    """Write optimization history, parameter importances, slice, and the contour of the first two dimensions.

    `params`: the dimensions of the round's space, in order (the shipped spaces start with
    `lr` and `l2`: their contour is `contour_lr_l2`). A plot that the study cannot support
    yet (too few completed trials) is skipped.

    Returns:
        The files written.
    """
    import matplotlib  # noqa: PLC0415

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
    for name, fn, kwargs in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                getattr(vis, f"plot_{fn}")(study, **kwargs).write_html(out / f"{name}.html", include_plotlyjs="cdn")
                written.append(out / f"{name}.html")
                ax = getattr(vmpl, f"plot_{fn}")(study, **kwargs)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
                fig.savefig(out / f"{name}.png", dpi=80, bbox_inches="tight")
                plt.close(fig)
                written.append(out / f"{name}.png")
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            (out / f"{name}.skipped.txt").write_text(f"{name} not drawn: {exc}\n")
            written.append(out / f"{name}.skipped.txt")
    return written
