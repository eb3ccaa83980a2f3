"""The `tunebench` command line: one sub-command per DVC stage (fetch ... report), and tools around them.

Start-up imports nothing heavy: TensorFlow is imported only by sub-commands
that train. Exit codes: 0 success, 1 a failure at run time, 2 bad
configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines (creating tables, inferring signatures)

from pipeline.config import Params, load_params  # noqa: E402
from pipeline.errors import ConfigError, TunebenchError, terminate_as_interrupt  # noqa: E402


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
    from pipeline import datasets, paths, report_sources  # noqa: PLC0415

    if args.list:
        names = sorted(set(datasets.names()) | set(params.datasets))
        width = max(len("dataset"), *map(len, names))
        print(f"{'dataset':<{width}} {'in params':<10} availability")
        for name in names:
            if name in params.datasets:  # its own raw folder; `catalog:` entries and custom sources resolved
                where = report_sources.availability(params, name)[0]
                catalog = params.catalog_name(name)
                if params.dataset(name).source != "builtin":
                    where += " (custom source in params.yaml)"
                elif catalog != name:
                    where += f" (catalog {catalog})"
            else:
                where = datasets.availability(name, paths.raw_dir(name), [*params.mirrors])
            print(f"{name:<{width}} {'yes' if name in params.datasets else '-':<10} {where}")
        return 0
    return _for_each("dataset", _fetched)(params, args)


def _fetched(params: Params, args, ds: str) -> str:
    from pipeline import paths, stages  # noqa: PLC0415

    return f"{len(stages.fetch(params, ds).get('files', []))} file(s) verified in {paths.raw_dir(ds)}"


def _preprocessed(params: Params, args, ds: str) -> str:
    from pipeline import stages  # noqa: PLC0415

    return f"features written to {stages.preprocess(params, ds)}"


def _searched(params: Params, args, key: str) -> str:
    from pipeline import stages  # noqa: PLC0415

    best = stages.search(params, key, only_round=args.round, n_trials=args.n_trials,
                         timeout=args.timeout, workers=args.workers, storage_url=args.storage)["best"]  # fmt: skip
    return f"best {best['value']:.4f} with {best['params']}" if best else "best no completed trial"


def cmd_studies(params: Params, args) -> int:
    import optuna  # noqa: PLC0415

    from pipeline import paths  # noqa: PLC0415
    from pipeline.search.storage import open_storage  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = args.storage or params.storage_url()
    ts = optuna.trial.TrialState
    states = (ts.COMPLETE, ts.PRUNED, ts.FAIL, ts.RUNNING)
    rows: dict[str, list] = {}  # study name -> its row; storages are opened before anything is printed
    for key in _targets(params, args, "benchmark"):
        if url is None and not paths.journal_file(key).exists():
            continue
        storage = open_storage(url, key)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
            if s.study_name in rows or not s.study_name.startswith(f"{key}."):
                continue
            trials = optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
            count = {st: sum(t.state == st for t in trials) for st in ts}
            best = s.best_trial.value if s.best_trial else None
            rows[s.study_name] = [s.study_name, *(count[st] for st in states), best]
    if not rows:
        print("(no studies yet: run `tunebench search` or `dvc repro`)")
        return 0
    print(table(["study", "complete", "pruned", "fail", "running", "best"], list(rows.values())))
    return 0


def _number(value) -> float | None:
    """`value` as a number (numeric strings too, such as registry tags), else None."""
    try:
        return None if isinstance(value, bool) or value is None else float(value)
    except (TypeError, ValueError):
        return None


def _cell(value) -> str:
    """A table cell: a whole number as is, any other number rounded to 4 decimals, None as `-`."""
    n = _number(value)
    if n is None:
        return "-" if value is None else str(value)
    return str(int(n)) if isinstance(value, int) else f"{n:.4f}"


def table(headers: list[str], rows: list[list]) -> str:
    """`rows` under `headers`, columns aligned: numbers (rounded by `_cell`) to the right, text to the left."""
    cells = [[_cell(v) for v in row] for row in rows]
    right = [all(v is None or _number(v) is not None for v in col) for col in zip(*rows)]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(line, widths, right)).rstrip()
        for line in [headers, *cells]
    )


def _for_each(by: str, run):
    """The command that calls `run(params, args, key)` for each target (`by`: `dataset` or `benchmark`, see
    `_targets`) and prints `key: <what it returned>` (nothing for None)."""

    def command(params: Params, args) -> int:
        for key in _targets(params, args, by):
            if (line := run(params, args, key)) is not None:
                print(f"{key}: {line}")
        return 0

    return command


def _stage_done(fn_name: str):
    """The command that runs `stages.<fn_name>` per benchmark: `<fn_name> done`, with its test metrics if any."""

    def run(params: Params, args, key: str) -> str:
        from pipeline import stages  # noqa: PLC0415

        out = getattr(stages, fn_name)(params, key)
        return f"{fn_name} done" + (f" ({json.dumps(out['test'])})" if isinstance(out, dict) and "test" in out else "")

    return _for_each("benchmark", run)


def _promoted(params: Params, args, key: str) -> None:
    from pipeline import stages  # noqa: PLC0415

    stages.promote(params, key, force=args.force, dry_run=args.dry_run)  # it prints its own lines


def cmd_models(params: Params, args) -> int:
    from pipeline import registry, tracking  # noqa: PLC0415

    rows = registry.list_models(tracking.connect(params.tracking_uri()))
    if not rows:
        print("(no registered models yet: run `dvc repro` or `tunebench promote`)")
        return 0
    metrics = sorted({m for r in rows for m in r["metrics"]})
    print(table(["model", "version", "aliases", *metrics],
                [[r["name"], int(r["version"]), ",".join(r["aliases"]) or "-", *(r["metrics"].get(m) for m in metrics)]
                 for r in rows]))  # fmt: skip
    return 0


def cmd_report(params: Params, args) -> int:
    from pipeline import stages  # noqa: PLC0415

    print(f"report written to {stages.report(params)}")
    return 0


def cmd_profile(params: None, args) -> int:
    """Switch params.yaml to a profile of `profiles/` (no name: say which one it is)."""
    from pipeline import profiles  # noqa: PLC0415

    if not args.name:
        now = profiles.current(args.params)
        print(f"{args.params}: {f'profile {now}' if now else 'local edits (matches no profile)'}; "
              f"profiles: {', '.join(profiles.available())}")  # fmt: skip
        return 0
    done = profiles.switch(args.name, params_path=args.params, force=args.force)
    kept = f"; your edits kept in {done['backup']}" if done["backup"] else ""
    print(f"{args.params}: profile {done['profile']} ({len(done['datasets'])} datasets, {len(done['benchmarks'])} "
          f"benchmarks; was {done['previous'] or 'local edits'}{kept}); dvc.yaml plots regenerated; "
          "run `dvc repro`")  # fmt: skip
    return 0


def cmd_summary(params: Params, args) -> int:
    from pipeline import report  # noqa: PLC0415

    print(report.summary_table(params))
    return 0


def cmd_ui(params: Params, args) -> int:
    from pipeline import tracking  # noqa: PLC0415

    uri = params.tracking_uri()
    tracking.check_ui_port(args.host, args.port)
    argv, env = tracking.ui_command(uri, args.host, args.port)  # the store URI travels in env, not argv
    base = f"http://{args.host}:{args.port}"
    links = tracking.ui_links(uri, base)
    print(f"MLflow UI for {tracking.redact(uri)} at {base} (Ctrl-C to stop)", flush=True)
    if links:
        width = max(len(name) for name, _ in links)
        print("runs of each experiment (the Model training view):", flush=True)
        print("\n".join(f"  {name:<{width}}  {link}" for name, link in links), flush=True)
    os.execve(argv[0], argv, env)
    return 0


def _positive(kind):
    """An argparse type: a finite number above zero."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value != value or value in (float("inf"),):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use a number from 1 to 65535")
    return int(text)


class _Help(argparse.HelpFormatter):
    """Help on the terminal's width, at least 100 columns, so each command's line stays one line."""

    def __init__(self, prog: str) -> None:
        import shutil  # noqa: PLC0415

        super().__init__(prog, width=max(100, shutil.get_terminal_size().columns), max_help_position=24)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end in one `error:` line and exit 2, like configuration mistakes."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command (each with a one-line description and an example)."""
    p = _Parser(prog="tunebench", description=__doc__.splitlines()[0], formatter_class=_Help,
                epilog="`tunebench COMMAND --help` describes a command, with an example.")  # fmt: skip
    common = _Parser(add_help=False)
    common.add_argument("--params", default=argparse.SUPPRESS, help="the params file (default: params.yaml)")
    debug_help = "show the Python traceback of a failure (also TUNEBENCH_DEBUG=1)"
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    verbose_help = "say why the search chose its workers and threads (also TUNEBENCH_VERBOSE=1)"
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    p.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    p.add_argument("--debug", action="store_true", help=debug_help)
    p.add_argument("--verbose", action="store_true", help=verbose_help)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def add(name, fn, help_, example, *, dataset=False, benchmark=False):
        sp = sub.add_parser(name, help=help_, description=f"{help_}.", epilog=f"example: {example}",
                            parents=[common], formatter_class=_Help)  # fmt: skip
        sp.set_defaults(fn=fn)
        if dataset:
            sp.add_argument("--dataset", help="only this dataset (default: every one in params.yaml)")
        if benchmark:
            sp.add_argument("--benchmark", help="only this benchmark (default: all, or those of --dataset)")
        return sp

    add("validate", cmd_validate, "check params.yaml and exit", "tunebench validate --params profiles/full.yaml")
    f = add("fetch", cmd_fetch, "fetch and verify datasets into data/raw", "tunebench fetch --dataset digits",
            dataset=True)  # fmt: skip
    f.add_argument("--list", action="store_true", help="print the catalog and where each dataset is available")
    add("preprocess", _for_each("dataset", _preprocessed), "build features into data/processed",
        "tunebench preprocess --dataset digits", dataset=True)  # fmt: skip
    s = add("search", _for_each("benchmark", _searched), "run or resume the Optuna rounds of benchmarks",
            "tunebench search --benchmark digits_linear --workers 2", dataset=True, benchmark=True)  # fmt: skip
    s.add_argument("--round", type=_positive(int), help="only round K (1-based); earlier rounds must exist")
    s.add_argument("--n-trials", type=_positive(int), help="trial budget of the round(s), overriding params.yaml")
    s.add_argument("--timeout", type=_positive(float), help="time budget in seconds per round")
    s.add_argument("--workers", type=_positive(int), help="local worker processes sharing each study")
    s.add_argument("--storage", help="Optuna storage URL (default: journal file in studies/<benchmark>)")
    st = add("studies", cmd_studies, "list studies with trial counts by state and the best value",
             "tunebench studies --dataset digits", dataset=True, benchmark=True)  # fmt: skip
    st.add_argument("--storage", help="Optuna storage URL")
    add("train_best", _stage_done("train_best"), "retrain the best configuration",
        "tunebench train_best --benchmark digits_linear", dataset=True, benchmark=True)  # fmt: skip
    add("evaluate", _stage_done("evaluate"), "evaluate on the test split",
        "tunebench evaluate --benchmark digits_linear", dataset=True, benchmark=True)  # fmt: skip
    pr = add("promote", _for_each("benchmark", _promoted), "register and promote to champion if better",
             "tunebench promote --benchmark digits_linear --dry-run", dataset=True, benchmark=True)  # fmt: skip
    pr.add_argument("--force", action="store_true", help="make the new version champion regardless")
    pr.add_argument("--dry-run", action="store_true", help="print the decision, change nothing")
    add("models", cmd_models, "list registered models, versions, aliases and test metrics", "tunebench models")
    add("report", cmd_report, "write the leaderboard", "tunebench report")
    add("summary", cmd_summary, "print per benchmark: test metric, baseline, whether the champion moved",
        "tunebench summary")  # fmt: skip
    pf = add("profile", cmd_profile, "switch params.yaml to a profile of profiles/ (default, full, ...)",
             "tunebench profile full")  # fmt: skip
    pf.add_argument("name", nargs="?", help="the profile (profiles/<name>.yaml); none: show the current one")
    pf.add_argument("--force", action="store_true", help="overwrite local edits (kept as params.yaml.bak)")
    pf.set_defaults(loads_params=False)
    ui = add("ui", cmd_ui, "serve the MLflow UI over the pipeline's store", "tunebench ui --port 5001")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=_port, default=5000)
    return p


_EXTRAS = {  # optional packages (pyproject.toml extras) -> how to install them
    "tensorflow": 'pip install -e ".[cpu]" (or ".[gpu]" on a CUDA machine)',
    "keras_tuner": 'pip install -e ".[bench]"',
}


def _error_line(err: BaseException) -> tuple[str, int]:
    """The one line and exit code the user sees for a failure (the traceback only with --debug)."""
    if isinstance(err, TunebenchError):
        return str(err), err.exit_code
    if isinstance(err, PermissionError):
        where = f" {err.filename}" if err.filename else ""
        return f"permission denied{where}: make the project folder writable or run from a copy you own", 1
    if isinstance(err, OSError) and err.errno == 30:  # EROFS
        return f"read-only file system{f' at {err.filename}' if err.filename else ''}: run from a writable copy", 1
    if isinstance(err, OSError) and err.errno == 28:  # ENOSPC
        return "no space left on device: free some disk space and rerun (finished work is kept)", 1
    if isinstance(err, KeyboardInterrupt):
        return "interrupted; rerun the same command to resume", 130
    if isinstance(err, ModuleNotFoundError) and err.name:
        top = err.name.partition(".")[0]
        how = _EXTRAS.get(top, f"pip install {top}")
        return f"Python package {top} is not installed: {how}", 1
    text = str(err).splitlines()[0] if str(err) else ""
    return f"unexpected {type(err).__name__}: {text} (rerun with --debug for the traceback)", 1


def _format_error(text: str, *, config: bool) -> str:
    """`error: ` before each problem of a configuration error, or before the first line of any other
    (later lines, such as the places a fetch looked, are indented under it)."""
    lines = [line for line in text.splitlines() if line.strip()] or ["failed"]
    if config:
        return "\n".join(f"error: {line}" for line in lines)
    return "\n".join([f"error: {lines[0]}", *(f"  {line.strip()}" for line in lines[1:])])


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tunebench` and `python -m pipeline`."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("TUNEBENCH_DEBUG", "") not in ("", "0")
    if args.verbose:
        os.environ["TUNEBENCH_VERBOSE"] = "1"  # read where the details are printed, in workers too
    try:
        params = load_params(args.params) if getattr(args, "loads_params", True) else None
        with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C: no half-written output is kept
            return args.fn(params, args)
    except (Exception, KeyboardInterrupt) as err:
        if debug:
            traceback.print_exc()
        text, code = _error_line(err)
        print(_format_error(text, config=code == 2), file=sys.stderr)
        return code


def _exit(code: int):
    """Exit with `code` once the exit handlers ran and the streams are flushed, without the interpreter's
    teardown of every object (4 s with TensorFlow and MLflow loaded: `benchmarks/overhead.py`); a plain
    `sys.exit` while a non-daemon thread still runs."""
    import atexit  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
