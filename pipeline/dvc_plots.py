"""The top-level `plots:` section of dvc.yaml, generated from params.yaml: what `dvc plots show` draws.

DVC 3 resolves `${...}` in top-level plots but has no `foreach` there, so one plot per benchmark
cannot be written once in dvc.yaml; it is generated here instead, for every benchmark:

* classification: the confusion matrix (`confusion` template, class names; its PNG, with the axes the
  other way round, goes to MLflow only, so each matrix is drawn once);
  regression: predicted against actual (`scatter`) and the residuals PNG;
* the learning curves of the retrained model (`linear`: loss, then the task metric, over epochs: apart,
  since an MSE loss of hundreds would flatten an MAE on a shared axis);
* the search history (trial number against validation score, one marker shape per round; DVC keeps
  colours for revisions, so `dvc plots diff` compares them): DVC's `scatter` with a y axis fitted to the
  scores rather than starting at zero, the project's template `.dvc/plots/search_history.json`.

`python -m pipeline.dvc_plots` rewrites the section after a change to params.yaml's benchmarks;
`--check` exits 1 when dvc.yaml is out of date (the tests run it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline import evaluation, paths
from pipeline.config import Params, load_params
from pipeline.search_summary import round_file
from pipeline.tasks import task_metric

HEADER = "# Generated from params.yaml by `python -m pipeline.dvc_plots` (do not edit by hand): a set per benchmark.\n"
MARKER = "plots:\n"


def _task(params: Params, dataset: str) -> str:
    from pipeline import datasets  # noqa: PLC0415

    cfg = params.dataset(dataset)
    custom = None if cfg.source == "builtin" else cfg.source.model_dump()
    return datasets.get_spec(params.catalog_name(dataset), custom).task


def plot_declarations(params: Params) -> list:
    """The `plots:` entries of every benchmark, in params.yaml's order."""
    out: list = []
    for key, bench in params.benchmarks.items():
        task = _task(params, bench.dataset)
        metric, _ = task_metric(task)
        d = paths.plots_dir(key).as_posix()
        if task == "regression":
            out.append({f"{key}: predicted vs actual (test)": {
                "template": "scatter", "x": "actual", "y": {f"{d}/{evaluation.PREDICTIONS}": "predicted"},
                "x_label": "actual", "y_label": "predicted"}})  # fmt: skip
            out.append(f"{d}/{evaluation.RESIDUALS_PNG}")
        else:
            out.append({f"{key}: confusion matrix (test)": {
                "template": "confusion", "x": "actual", "y": {f"{d}/{evaluation.CONFUSION}": "predicted"},
                "x_label": "actual", "y_label": "predicted"}})  # fmt: skip
        for column in ("loss", metric):
            out.append({f"{key}: {column} of the retrained model": {
                "template": "linear", "x": "epoch", "y": {f"{d}/{evaluation.LEARNING_CURVE}": column},
                "x_label": "epoch", "y_label": f"{column} (training data)"}})  # fmt: skip
        rounds = {f"{d}/{round_file(k, r.name)}": "value" for k, r in enumerate(bench.rounds, start=1)}
        out.append({f"{key}: search history (one marker per round)": {
            "template": "search_history", "x": "trial", "y": rounds,
            "x_label": "trial (in the order the rounds ran)",
            "y_label": f"val_{metric} (completed trials)"}})  # fmt: skip
    return out


def render(dvc_yaml: str, params: Params) -> str:
    """`dvc_yaml` with its top-level `plots:` section (the file's last) replaced by the generated one."""
    head = "\n" + dvc_yaml
    for marker in (HEADER, MARKER):
        cut = head.find("\n" + marker)
        if cut >= 0:
            head = head[: cut + 1]
    head = head[1:]
    body = yaml.safe_dump({"plots": plot_declarations(params)}, sort_keys=False, width=1000)
    return head.rstrip("\n") + "\n\n" + HEADER + body


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with `--check`, compare) the `plots:` section of dvc.yaml from params.yaml."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.dvc_plots", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dvc-yaml", default="dvc.yaml")
    ap.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs from what would be written")
    args = ap.parse_args(argv)
    target = Path(args.dvc_yaml)
    text = target.read_text(encoding="utf-8")
    new = render(text, load_params(args.params))
    if args.check:
        if new != text:
            print(f"error: {target}: the plots section is out of date with {args.params}; "
                  "run `python -m pipeline.dvc_plots`", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    if new != text:
        from pipeline import fileio  # noqa: PLC0415

        fileio.write_text_atomic(target, new)
        print(f"{target}: plots section rewritten from {args.params}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
