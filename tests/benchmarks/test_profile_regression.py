"""benchmarks/profile_regression.py: the verdict of 'more search gave a worse model' from two runs' per-seed scores."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import profile_regression
from benchmarks.runner import figures


def _evaluation(project: Path, name: str, metric: str, direction: str, values: list[float]) -> None:
    folder = project / "results" / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{metric: v, "seed": i} for i, v in enumerate(values)]
    (folder / f"{name}.json").write_text(json.dumps({"benchmark": name, "metric": metric, "direction": direction,
                                                     "per_seed": rows}))  # fmt: skip


def test_worse_only_when_the_bigger_runs_interval_lies_on_the_worse_side(tmp_path):
    default, bigger = tmp_path / "default", tmp_path / "full"
    _evaluation(default, "acc_same", "accuracy", "maximize", [0.80, 0.82, 0.81])
    _evaluation(bigger, "acc_same", "accuracy", "maximize", [0.79, 0.81, 0.80, 0.82, 0.80])
    _evaluation(default, "acc_worse", "accuracy", "maximize", [0.90, 0.91, 0.90])
    _evaluation(bigger, "acc_worse", "accuracy", "maximize", [0.80, 0.81, 0.80, 0.81, 0.80])
    _evaluation(default, "mae_better", "mae", "minimize", [3.0, 3.1, 3.05])
    _evaluation(bigger, "mae_better", "mae", "minimize", [2.0, 2.1, 2.05, 2.0, 2.1])
    _evaluation(bigger, "only_in_full", "mae", "minimize", [1.0, 1.1])
    out = tmp_path / "out.json"
    assert profile_regression.main(["--default", str(default), "--bigger", str(bigger), "--out", str(out)]) == 1
    saved = figures(out)
    verdicts = {r["benchmark"]: r["verdict"] for r in saved["rows"]}
    assert verdicts == {"acc_same": "same within the intervals", "acc_worse": "worse", "mae_better": "better"}
    assert saved["worse"] == ["acc_worse"]
    rows = {r["benchmark"]: r for r in saved["rows"]}
    assert rows["acc_worse"]["welch_p"] < 0.01 < rows["acc_same"]["welch_p"]
    assert rows["mae_better"]["bigger"]["n"] == 5 and rows["mae_better"]["default"]["n"] == 3


def test_constant_scores_get_no_test_and_no_common_benchmark_is_an_error(tmp_path, capsys):
    default, bigger = tmp_path / "default", tmp_path / "full"
    _evaluation(default, "linear", "accuracy", "maximize", [0.95] * 3)
    _evaluation(bigger, "linear", "accuracy", "maximize", [0.96] * 5)
    out = tmp_path / "out.json"
    assert profile_regression.main(["--default", str(default), "--bigger", str(bigger), "--out", str(out)]) == 0
    row = figures(out)["rows"][0]
    assert row["welch_p"] is None and row["verdict"] == "better"
    _evaluation(tmp_path / "other", "wine", "accuracy", "maximize", [0.9, 0.9])
    assert (
        profile_regression.main(["--default", str(default), "--bigger", str(tmp_path / "other"), "--out", str(out)])
        == 2
    )
    assert "no benchmark evaluated in both" in capsys.readouterr().err
