"""The `tunebench` command line: one sub-command per DVC stage, plus `ui`, `studies`, `models`, `validate`.

Start-up imports nothing heavy: TensorFlow is imported only by sub-commands
that train. Exit codes: 0 success, 1 a failure at run time, 2 bad
configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from pipeline.config import ConfigError, Params, load_params  # noqa: E402


def _targets(params: Params, args, by: str) -> list[str]:
    """Benchmarks (or datasets) named by `--benchmark` / `--dataset`, or all."""
    if by == "dataset":
        if getattr(args, "dataset", None):
            params.dataset(args.dataset)
            return [args.dataset]
        return list(params.datasets)
    if getattr(args, "benchmark", None):
        params.benchmark(args.benchmark)
        return [args.benchmark]
    if getattr(args, "dataset", None):
        params.dataset(args.dataset)
        keys = [k for k, b in params.benchmarks.items() if b.dataset == args.dataset]
        if not keys:
            raise ConfigError(f"params.yaml: no benchmark uses dataset {args.dataset!r}")
        return keys
    return list(params.benchmarks)


def cmd_validate(params: Params, args) -> int:
    print(f"{args.params}: valid ({len(params.datasets)} datasets, {len(params.benchmarks)} benchmarks)")
    return 0


def cmd_fetch(params: Params, args) -> int:
    from pipeline import datasets, paths, stages  # noqa: PLC0415

    if args.list:
        print(f"{'dataset':<16} {'in params':<10} availability")
        for name in sorted(set(datasets.names()) | set(params.datasets)):
            where = datasets.availability(name, paths.raw_dir(name), [*params.mirrors]) \
                if name in datasets.names() else "custom (params.yaml)"  # fmt: skip
            print(f"{name:<16} {'yes' if name in params.datasets else '-':<10} {where}")
        return 0
    for ds in _targets(params, args, "dataset"):
        manifest = stages.fetch(params, ds)
        print(f"{ds}: {len(manifest.get('files', []))} file(s) verified in {paths.raw_dir(ds)}")
    return 0


def cmd_preprocess(params: Params, args) -> int:
    from pipeline import stages  # noqa: PLC0415

    for ds in _targets(params, args, "dataset"):
        print(f"{ds}: features written to {stages.preprocess(params, ds)}")
    return 0


def cmd_search(params: Params, args) -> int:
    from pipeline import stages  # noqa: PLC0415

    for key in _targets(params, args, "benchmark"):
        result = stages.search(params, args.params, key, only_round=args.round, n_trials=args.n_trials,
                               timeout=args.timeout, workers=args.workers, storage_url=args.storage)  # fmt: skip
        best = result["best"]
        shown = f"{best['value']:.4f} with {best['params']}" if best else "no completed trial"
        print(f"{key}: best {shown}")
    return 0


def cmd_studies(params: Params, args) -> int:
    import optuna  # noqa: PLC0415

    from pipeline import paths  # noqa: PLC0415
    from pipeline.search.storage import open_storage  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = args.storage or params.storage_url()
    keys = _targets(params, args, "benchmark")
    seen: set[str] = set()
    print(f"{'study':<48} {'complete':>8} {'pruned':>7} {'fail':>5} {'running':>7}  best")
    for key in keys:
        if url is None and not paths.journal_file(key).exists():
            continue
        storage = open_storage(url, key)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
            if s.study_name in seen or not s.study_name.startswith(f"{key}."):
                continue
            seen.add(s.study_name)
            trials = optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
            count = {st: sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
            best = f"{s.best_trial.value:.4g}" if s.best_trial else "-"
            ts = optuna.trial.TrialState
            print(f"{s.study_name:<48} {count[ts.COMPLETE]:>8} {count[ts.PRUNED]:>7} {count[ts.FAIL]:>5} "
                  f"{count[ts.RUNNING]:>7}  {best}")  # fmt: skip
    if not seen:
        print("(no studies yet: run `tunebench search` or `dvc repro`)")
    return 0


def _per_benchmark(fn_name: str):
    def run(params: Params, args) -> int:
        from pipeline import stages  # noqa: PLC0415

        for key in _targets(params, args, "benchmark"):
            out = getattr(stages, fn_name)(params, key)
            print(f"{key}: {fn_name} done" + (f" ({json.dumps(out.get('test'))})" if isinstance(out, dict)
                                              and "test" in out else ""))  # fmt: skip
        return 0

    return run


def cmd_promote(params: Params, args) -> int:
    from pipeline import stages  # noqa: PLC0415

    for key in _targets(params, args, "benchmark"):
        stages.promote(params, key, force=args.force, dry_run=args.dry_run)
    return 0


def cmd_models(params: Params, args) -> int:
    from pipeline import registry, tracking  # noqa: PLC0415

    rows = registry.list_models(tracking.client(params.tracking_uri()))
    if not rows:
        print("(no registered models yet: run `dvc repro` or `tunebench promote`)")
    for r in rows:
        print(f"{r['name']:<32} v{r['version']:<4} {','.join(r['aliases']) or '-':<22} {r['metrics']}")
    return 0


def cmd_report(params: Params, args) -> int:
    from pipeline import stages  # noqa: PLC0415

    print(f"report written to {stages.report(params)}")
    return 0


def cmd_ui(params: Params, args) -> int:
    from pipeline import tracking  # noqa: PLC0415

    uri = params.tracking_uri()
    argv, env = tracking.ui_command(uri, args.host, args.port)  # the store URI travels in env, not argv
    print(f"MLflow UI for {tracking.redact(uri)} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    os.execve(argv[0], argv, env)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    p = argparse.ArgumentParser(prog="tunebench", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_, *, dataset=False, benchmark=False):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        if dataset:
            sp.add_argument("--dataset", help="only this dataset (default: every one in params.yaml)")
        if benchmark:
            sp.add_argument("--benchmark", help="only this benchmark (default: all, or those of --dataset)")
        return sp

    add("validate", cmd_validate, "check params.yaml and exit")
    f = add("fetch", cmd_fetch, "fetch and verify datasets into data/raw", dataset=True)
    f.add_argument("--list", action="store_true", help="print the catalog and where each dataset is available")
    add("preprocess", cmd_preprocess, "build features into data/processed", dataset=True)
    s = add("search", cmd_search, "run or resume the Optuna rounds of benchmarks", dataset=True, benchmark=True)
    s.add_argument("--round", type=int, help="only round K (1-based); earlier rounds must exist")
    s.add_argument("--n-trials", type=int, help="trial budget of the round(s), overriding params.yaml")
    s.add_argument("--timeout", type=float, help="time budget in seconds per round")
    s.add_argument("--workers", type=int, help="local worker processes sharing each study")
    s.add_argument("--storage", help="Optuna storage URL (default: journal file in studies/<benchmark>)")
    st = add("studies", cmd_studies, "list studies with trial counts by state", dataset=True, benchmark=True)
    st.add_argument("--storage", help="Optuna storage URL")
    add("train_best", _per_benchmark("train_best"), "retrain the best configuration", dataset=True, benchmark=True)
    add("evaluate", _per_benchmark("evaluate"), "evaluate on the test split", dataset=True, benchmark=True)
    pr = add("promote", cmd_promote, "register and promote to champion if better", dataset=True, benchmark=True)
    pr.add_argument("--force", action="store_true", help="make the new version champion regardless")
    pr.add_argument("--dry-run", action="store_true", help="print the decision, change nothing")
    add("models", cmd_models, "list registered models, versions, aliases and metrics")
    add("report", cmd_report, "write the leaderboard")
    ui = add("ui", cmd_ui, "serve the MLflow UI over the pipeline's store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tunebench` and `python -m pipeline`."""
    args = build_parser().parse_args(argv)
    try:
        params = load_params(args.params)
        return args.fn(params, args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
