"""The replay benchmark: the `replay` family on a tiny recording made here, the methods on it, and the statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from pipeline.config import parse_params
from pipeline.errors import ConfigError
from pipeline.models import DivergedError, get_family
from pipeline.models.replay import Curves, load_curves, save_curves

LR = [1e-4, 1e-3, 1e-2, 1e-1]
DROPOUT = [0.0, 0.5]


def tiny_recording(path: Path, *, folds: int = 1, epochs: int = 6) -> Path:
    """A multiclass recording over lr x dropout, 2 seeds: validation = quality x (1 - 0.5^epoch) + seed/100,
    best at lr 1e-2 and dropout 0; test = validation - 0.01; lr 1e-1 with dropout 0.5 diverges at epoch 3."""
    quality = np.array([[0.5, 0.6], [0.8, 0.7], [0.9, 0.85], [0.4, 0.3]]).ravel()  # (lr, dropout), row-major
    shape = (len(quality), 2, folds, epochs)
    ramp = 1 - 0.5 ** np.arange(1, epochs + 1)
    seeds = np.arange(2)[None, :, None, None] / 100
    val = (quality[:, None, None, None] * ramp + seeds + np.arange(folds)[None, None, :, None] / 1000) * np.ones(shape)
    val[7, :, :, 2:] = np.nan
    grid = {"lr": {"values": LR, "log": True}, "dropout": {"values": DROPOUT, "log": False}}
    meta = {"problem": "tiny", "task": "multiclass", "metric": "accuracy", "direction": "maximize", "epochs": epochs,
            "seeds": 2, "folds": folds, "fixed": {}, "grid": grid, "epoch_s": 0.01}  # fmt: skip
    save_curves(path, meta, val, val - 0.01)
    return path


@pytest.fixture
def tiny(tmp_path) -> str:
    return str(tiny_recording(tmp_path / "tiny.npz"))


def train(curves: str, seed: int = 0, epochs: int = 6, on_epoch=None, **config):
    return get_family("replay").train({"curves": curves, **config}, None, None, [], None, task="multiclass",
                                      n_classes=3, epochs=epochs, seed=seed, on_epoch=on_epoch)  # fmt: skip


def test_nearest_grid_point_in_log_space(tiny):
    curves = load_curves(tiny)
    assert curves.point(curves.index({"lr": 2.9e-3, "dropout": 0.1})) == {"lr": 1e-3, "dropout": 0.0}
    assert curves.point(curves.index({"lr": 3.3e-3, "dropout": 0.3})) == {"lr": 1e-2, "dropout": 0.5}
    assert curves.point(curves.index({"lr": 5.0, "dropout": 0.0})) == {"lr": 1e-1, "dropout": 0.0}
    with pytest.raises(ValueError, match="need dropout"):
        curves.index({"lr": 1e-3})


def test_replay_plays_the_recorded_curve_epoch_by_epoch(tiny):
    seen = []
    model = train(tiny, on_epoch=lambda e, logs: seen.append((e, logs["val_accuracy"])), lr=0.012, dropout=0.0)
    recorded = load_curves(tiny).val[4, model_seed(tiny, 0), 0]
    assert [e for e, _ in seen] == list(range(6))
    np.testing.assert_allclose([v for _, v in seen], recorded, rtol=1e-6)
    assert model.best_epoch == 6 and model.history["val_accuracy"] == pytest.approx(recorded.tolist())
    assert model.evaluate(None, None)["accuracy"] == pytest.approx(recorded[-1] - 0.01)


def model_seed(path: str, seed: int) -> int:
    """Which recorded training seed search seed `seed` replays (holdout)."""
    val, _ = load_curves(path).run(0, seed)
    return int(np.argmin([abs(val[0] - load_curves(path).val[0, s, 0, 0]) for s in range(2)]))


def test_pruning_stops_the_replay_where_on_epoch_raises(tiny):
    seen = []

    def prune_at_two(epoch, logs):
        seen.append(epoch)
        if epoch == 1:
            raise optuna.TrialPruned("pruned")

    with pytest.raises(optuna.TrialPruned):
        train(tiny, on_epoch=prune_at_two, lr=1e-2, dropout=0.0)
    assert seen == [0, 1]


def test_a_recorded_divergence_is_replayed(tiny):
    with pytest.raises(DivergedError, match="epoch 3"):
        train(tiny, lr=1e-1, dropout=0.5)
    assert train(tiny, epochs=2, lr=1e-1, dropout=0.5).best_epoch == 2  # before it diverged


def test_folds_and_seeds_pick_recorded_runs(tmp_path):
    path = str(tiny_recording(tmp_path / "folds.npz", folds=4))
    curves = load_curves(path)
    first = [curves.run(0, 4 * 3 + f)[0][0] for f in range(4)]  # search seed 3's four folds
    assert np.diff(first) == pytest.approx([0.001] * 3, abs=1e-6)  # fold k trains with seed + k
    seeds = {round(float(curves.run(0, 4 * s)[0][0] * 100)) % 100 for s in range(20)}
    assert seeds == {25, 26}  # both recorded training seeds get replayed (0.25 + seed / 100)


def test_quality_is_the_expected_test_score_at_the_best_validation_epoch(tiny):
    q = load_curves(tiny).quality
    assert int(np.argmax(q)) == 4  # lr 1e-2, dropout 0
    expected = 0.9 * (1 - 0.5**6) + 0.005 - 0.01  # mean over the two seeds, last epoch
    assert q[4] == pytest.approx(expected, abs=1e-6)
    assert q[7] == pytest.approx(0.3 * 0.75 + 0.005 - 0.01, abs=1e-6)  # diverged at 3: best epoch 2


def test_other_tasks_and_too_many_epochs_are_refused(tiny):
    family = get_family("replay")
    with pytest.raises(ValueError, match="6 epochs of a multiclass task, not 6 of a binary task"):
        family.train({"curves": tiny, "lr": 1e-3, "dropout": 0.0}, None, None, [], None, task="binary",
                     n_classes=None, epochs=6)  # fmt: skip
    with pytest.raises(ValueError, match="not 7 of"):
        train(tiny, epochs=7, lr=1e-3, dropout=0.0)
    with pytest.raises(ValueError, match="no file"):
        train(str(Path(tiny).with_name("missing.npz")), lr=1e-3, dropout=0.0)


def test_params_yaml_accepts_a_replay_benchmark_and_refuses_an_empty_curves(tiny):
    bench = {"dataset": "digits", "model": "replay", "hparams": {"curves": tiny},
             "space": {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "dropout": {"low": 0.0, "high": 0.5}},
             "rounds": [{"name": "r", "n_trials": 2, "epochs": 3}]}  # fmt: skip
    data = {"datasets": {"digits": {"source": "builtin", "preprocess": {"kind": "pca", "n_components": 0.95}}},
            "benchmarks": {"b": bench}}  # fmt: skip
    assert parse_params(data).benchmark("b").model == "replay"
    bench["hparams"] = {"curves": ""}
    with pytest.raises(ConfigError, match="curves must be a non-empty string"):
        parse_params(data)


def test_anytime_regret_is_the_area_under_the_incumbents_regret():
    from benchmarks.replay import bench

    assert bench.anytime([[0, 0.3], [10, 0.1], [40, 0.0]], 100) == pytest.approx((10 * 0.3 + 30 * 0.1) / 100)
    assert bench.anytime([[0, 0.2]], 50) == pytest.approx(0.2)


def test_compare_ranks_and_tests_tunebench_against_each_peer():
    from benchmarks.replay import bench

    rows = []
    for seed in range(12):
        for method, regret in (("tunebench", 0.01), ("random", 0.05 + seed / 1000), ("other", 0.01 + seed / 10**4)):
            rows.append({"problem": "p", "seed": seed, "method": method, "final_regret": regret})
    rows.append({"problem": "p", "seed": 99, "method": "random", "final_regret": 0.0})  # no block: others missing
    out = bench.compare(rows, "final_regret", ["tunebench", "random", "other"])
    assert out["blocks"] == 12
    tie = 1 / 24  # seed 0: tunebench and other tie, ranks 1.5 each
    assert out["mean_rank"] == {"tunebench": pytest.approx(1 + tie, abs=1e-3), "random": 3.0,
                                "other": pytest.approx(2 - tie, abs=1e-3)}  # fmt: skip
    assert out["friedman_p"] < 1e-3
    assert out["wilcoxon_vs_tunebench"]["random"]["p"] < 0.01
    assert out["wilcoxon_vs_tunebench"]["random"]["tunebench_better"] == 12


def test_rank_table_renders_compare_with_the_best_rank_in_bold_and_the_p_values():
    from benchmarks.replay import bench

    rows = [
        {"problem": "p", "seed": seed, "method": method, "final_regret": regret}
        for seed in range(12)
        for method, regret in (("tunebench", 0.01), ("random", 0.05 + seed / 1000))
    ]
    final = bench.compare(rows, "final_regret", ["tunebench", "random"])
    table = bench.rank_table({"30": final, "10": final}, ["tunebench", "random"]).splitlines()
    assert table[0] == "| budget | blocks | tunebench | random | Friedman p |"
    p = final["wilcoxon_vs_tunebench"]["random"]["p"]
    assert table[2].startswith("| 10 | 12 | **1.00** | 2.00 (") and f"{p:.0e}".replace("e-0", "e-") in table[2]
    assert table[3].startswith("| 30 |")  # budgets in numeric order


def test_screen_puts_each_variant_in_tunebenchs_place_and_tests_it_against_the_default():
    from benchmarks.replay import bench

    rows, kt = [], "keras_tuner_hyperband"
    for seed in range(12):
        regrets = {"tunebench": 0.02, "tunebench_pad10": 0.03 + seed / 10**4, "random": 0.01, kt: 0.04}
        rows += [dict(problem="p", seed=seed, method=x, budget=10, final_regret=r) for x, r in regrets.items()]
    out = bench.screen(rows, ["tunebench", "tunebench_pad10"])["10"]
    assert out["tunebench"]["mean_rank"] == {"tunebench": 2.0, "random": 1.0, kt: 3.0}
    variant = out["tunebench_pad10"]
    assert variant["mean_rank"] == {"tunebench": 2.0, "random": 1.0, kt: 3.0}  # in its place
    assert variant["wilcoxon_vs_tunebench"]["random"]["peer_better"] == 12
    assert variant["vs_default"]["default_better"] == 12 and variant["vs_default"]["p"] < 0.01


def test_peers_spend_at_most_the_budget(tiny):
    from benchmarks.replay import methods

    problem = methods.ReplayProblem(tiny)
    budget = 8 * problem.epochs
    for trace in (methods.run_optuna(problem, budget, 0, sampler="random", pruner="none"),
                  methods.run_optuna(problem, budget, 1, sampler="tpe", pruner="median")):  # fmt: skip
        assert 0 < trace.epochs <= budget and trace.events[-1][0] == trace.epochs
        assert problem.curves.point(problem.curves.index(trace.best_params)) in [
            problem.curves.point(i) for i in range(8)
        ]
    random_trace = methods.run_optuna(problem, budget, 0, sampler="random", pruner="none")
    assert random_trace.epochs == budget and len(random_trace.events) == 8  # 8 full trials, none pruned


@pytest.mark.slow
def test_keras_tuner_hyperband_stops_at_the_budget(tiny):
    from benchmarks.replay import methods

    problem = methods.ReplayProblem(tiny)
    trace = methods.run_keras_tuner(problem, 20 * problem.epochs, 0)
    assert 0.8 * 20 * problem.epochs <= trace.epochs <= 20 * problem.epochs
    assert trace.best_value is not None and problem.regret(trace.best_params) < 0.2


@pytest.mark.slow
def test_ray_tune_asha_stops_trials_early_and_at_the_budget(tmp_path, tiny):
    """Ray Tune's Tuner and ASHAScheduler for real: every epoch is reported and counted, most trials stop at a rung,
    the search ends once the next step would overrun, and it finds the tiny grid's best."""
    from benchmarks.replay import methods

    import ray

    try:
        problem = methods.ReplayProblem(tiny)
        budget = 20 * problem.epochs
        trace = methods.run_ray_asha(problem, budget, 0)
        assert budget - 1 <= trace.epochs <= budget and trace.events[-1][0] <= trace.epochs
        full = [e for e in trace.events if e[2] is not None]
        assert 0 < len(full) < 20 < len(trace.events)  # ASHA stopped most trials before a full trial
        assert all(np.diff([e[0] for e in trace.events]) >= 1)
        assert problem.regret(trace.best_params) == 0.0
        kfold = methods.ReplayProblem(str(tiny_recording(tmp_path / "folds.npz", folds=4)))
        trace = methods.run_ray_asha(kfold, 5 * 4 * kfold.epochs, 1)  # a step is a fold: 6 epochs
        assert 5 * 24 - 6 < trace.epochs <= 5 * 24 and trace.epochs % 6 == 0
    finally:  # Ray's background processes would otherwise live on for the rest of the session
        ray.shutdown()


def test_smac_multi_fidelity_spends_at_most_the_budget_on_epochs(tiny):
    """SMAC3's MultiFidelityFacade for real: its Hyperband asks for 2 or 6 epochs, a full-fidelity trial is a
    candidate, the budget holds, and it finds the tiny grid's best."""
    from benchmarks.replay import methods

    problem = methods.ReplayProblem(tiny)
    budget = 20 * problem.epochs
    trace = methods.run_smac(problem, budget, 0)
    assert budget - problem.epochs < trace.epochs <= budget
    spent = np.diff([0] + [e[0] for e in trace.events])
    assert set(spent) == {2, 6}  # Hyperband's rungs from 1 to 6 epochs, eta 3: 6 / 3 and 6
    assert all(e[2] is None for e, cost in zip(trace.events, spent, strict=True) if cost < problem.epochs)
    assert problem.regret(trace.best_params) == 0.0


@pytest.mark.slow
def test_tunebench_searches_a_replay_benchmark_with_its_own_rounds(tmp_path, tiny):
    from benchmarks.replay import methods

    problem = methods.ReplayProblem(tiny)
    project = methods.make_project(problem, tmp_path / "project")
    rounds = methods.tunebench_rounds(problem, 6)
    assert [r["epochs"] for r in rounds] == [1, 6]
    trace = methods.run_tunebench(problem, 6, 0, project, rounds, "tiny_b6")
    assert trace.epochs <= 6 * problem.epochs + 1
    assert len(trace.events) > 6  # the coarse round's cheap trials, then full ones
    assert problem.regret(trace.best_params) < 0.3
    assert (project / "results" / "search" / "tiny_b6.json").exists() and (project / "mlflow.db").exists()


@pytest.mark.slow
def test_a_warm_started_fine_round_on_run_search_draws_as_the_in_memory_rounds(tmp_path, tiny):
    from benchmarks.replay import fast
    from benchmarks.replay import methods

    problem = methods.ReplayProblem(tiny)
    project = methods.make_project(problem, tmp_path / "project")

    def trials(trace) -> list:
        return [(epochs, value, params) for epochs, _, value, params in trace.events]

    runs = {}
    for warm in (False, True):  # one benchmark: the studies differ by name only through warm_start
        rounds = methods.tunebench_rounds(problem, 4, warm_start=warm)
        real = methods.run_tunebench(problem, 4, 1, project, rounds, "tiny_b4")
        quick = fast.run_rounds(problem, 4, 1, rounds, "tiny_b4")
        assert trials(quick) == trials(real) and quick.best_params == real.best_params
        runs[warm] = trials(real)
    n_coarse = methods.tunebench_rounds(problem, 4)[0]["n_trials"]
    assert runs[False][:n_coarse] == runs[True][:n_coarse]  # the coarse round is the same
    assert runs[False][n_coarse + 1 :] != runs[True][n_coarse + 1 :]  # after the enqueued best, the fine draws differ


@pytest.mark.slow
def test_a_kfold_search_on_run_search_scores_as_the_in_memory_rounds(tmp_path):
    """A K-fold trial's value is the best epoch of its mean curve over folds, whose best epochs differ here."""
    from benchmarks.replay import fast
    from benchmarks.replay import methods

    path = tmp_path / "kfold.npz"
    curves = load_curves(str(tiny_recording(tmp_path / "classes.npz", folds=4)))
    wobble = 0.05 * np.sin(np.arange(6)[None, None, None, :] * (1 + np.arange(4)[None, None, :, None]))
    meta = {**curves.meta, "task": "regression", "metric": "mae", "direction": "minimize"}
    save_curves(path, meta, 3 - curves.val + wobble, 3 - curves.test + wobble)  # MAE: lower is better
    problem = methods.ReplayProblem(str(path))
    project = methods.make_project(problem, tmp_path / "project")  # Boston, 4 folds
    rounds = methods.tunebench_rounds(problem, 4)
    real = methods.run_tunebench(problem, 4, 1, project, rounds, "kfold_b4")
    quick = fast.run_rounds(problem, 4, 1, rounds, "kfold_b4")
    assert [e[2:] for e in quick.events] == [e[2:] for e in real.events] and quick.epochs == real.epochs
    assert quick.best_params == real.best_params
    # robust selection in memory retrains and chooses as `run_selection` does, its epochs counted
    selection = {"top_k": 3, "repeats": 2}
    rounds = methods.tunebench_rounds(problem, 20, reserve=methods.selection_cost(selection))
    real = methods.run_tunebench(problem, 20, 2, project, rounds, "kfold_b20", selection=selection)
    quick = fast.run_rounds(problem, 20, 2, rounds, "kfold_b20", selection=selection)
    assert quick.epochs == real.epochs and quick.best_params == real.best_params
    assert quick.best_value == pytest.approx(real.best_value)
    assert quick.epochs - quick.events[-2][0] == 3 * 2 * problem.epochs * 4  # top 3 x 2 repeats x 4 folds


def test_curves_round_trip(tmp_path, tiny):
    curves = load_curves(tiny)
    assert isinstance(curves, Curves) and curves.val.shape == (8, 2, 1, 6) and curves.val.dtype == np.float32


@pytest.mark.parametrize("name", ["random", "tpe"])
def test_samplers_salted_by_benchmark_draw_their_own_configurations(name):
    from pipeline.config import ParamRange
    from pipeline.search.samplers import make_sampler
    from pipeline.search.spaces import suggest

    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True), "dropout": ParamRange(low=0.0, high=0.5)}

    def draws(salt: str) -> list:
        study = optuna.create_study(sampler=make_sampler(name, 7, salt=salt))
        study.optimize(lambda t: sum(suggest(t, space).values()), n_trials=3)
        return [t.params for t in study.trials]

    assert draws("digits_keras_mlp") == draws("digits_keras_mlp")
    assert all(a != b for a, b in zip(draws("digits_keras_mlp"), draws("rt_polarity_keras_mlp"), strict=True))


@pytest.mark.slow
def test_benchmarks_with_one_space_and_seed_search_different_configurations(tmp_path, tiny):
    from benchmarks.replay import methods

    problem = methods.ReplayProblem(tiny)
    project = methods.make_project(problem, tmp_path / "project")
    rounds = [{"name": "coarse", "n_trials": 4, "epochs": 2, "pruner": "none"}]
    one, other = (methods.run_tunebench(problem, 1, 0, project, rounds, key) for key in ("digits_a", "rt_b"))
    assert len(one.events) == len(other.events) == 4
    drawn = [{k: round(v, 12) for k, v in e[3].items()} for e in one.events]
    assert all(a != {k: round(v, 12) for k, v in e[3].items()} for a, e in zip(drawn, other.events, strict=True))


@pytest.mark.slow
def test_record_keeps_each_epochs_validation_and_test_score(tmp_path, tiny):
    from benchmarks.replay import methods
    from benchmarks.replay import record

    from pipeline.features import ProcessedData

    project = methods.make_project(methods.ReplayProblem(tiny), tmp_path / "project")  # digits, PCA
    grid = {"lr": {"values": [1e-3, 1e-2], "log": True}, "dropout": {"values": [0.0], "log": False}}
    spec = {"dataset": "digits", "model": "numpy_mlp", "fixed": {"units": [16], "batch_size": 100}, "epochs": 3,
            "grid": grid}  # fmt: skip
    curves = load_curves(str(record.record("mini", spec, project, 2, tmp_path)))
    assert curves.val.shape == (2, 2, 1, 3) and curves.meta["grid"] == spec["grid"] and curves.meta["epoch_s"] > 0
    data = ProcessedData.load(project / "data" / "processed" / "digits")
    for epochs in (1, 3):  # the recorded scores are those of the model after that epoch (NumPy trains bit-identically)
        model = get_family("numpy_mlp").train({**spec["fixed"], "lr": 1e-2, "dropout": 0.0}, data.X_train,
                                              data.y_train, data.X_val, data.y_val, task="multiclass",
                                              n_classes=data.n_classes, epochs=epochs, seed=1)  # fmt: skip
        assert curves.val[1, 1, 0, epochs - 1] == pytest.approx(model.history["val_accuracy"][-1])
        assert curves.test[1, 1, 0, epochs - 1] == pytest.approx(model.evaluate(data.X_test, data.y_test)["accuracy"])


def test_keep_leaves_the_fine_rounds_ranges_unnarrowed_in_memory_only(tmp_path, tiny):
    from benchmarks.replay import bench, fast, methods
    from pipeline.config import ParamRange
    from pipeline.search.spaces import narrow

    problem = methods.ReplayProblem(tiny)
    default = methods.tunebench_rounds(problem, 12, pad=0.0)  # a tight box, so draws outside it show
    kept = methods.tunebench_rounds(problem, 12, pad=0.0, keep=("lr", "dropout"))
    assert kept[1]["keep"] == ["lr", "dropout"] and "keep" not in default[1]
    events = {name: fast.run_rounds(problem, 12, 3, rounds, "tiny_b12").events
              for name, rounds in (("default", default), ("kept", kept))}  # fmt: skip
    runs = {name: [params for _, _, _, params in e] for name, e in events.items()}
    n_coarse = default[0]["n_trials"]
    assert runs["default"][:n_coarse] == runs["kept"][:n_coarse]  # the same coarse round
    space = {n: ParamRange(**r) for n, r in problem.space.items()}
    dists = {n: optuna.distributions.FloatDistribution(r.low, r.high, log=r.log) for n, r in space.items()}
    coarse = [optuna.trial.create_trial(params=p, value=v, distributions=dists)
              for _, _, v, p in events["default"][:n_coarse] if p is not None]  # fmt: skip
    box, _ = narrow(space, coarse, "maximize", top_quantile=0.4, pad=0.0)
    fine = [p for p in runs["kept"][n_coarse:] if p is not None]
    assert all(space["lr"].low <= p["lr"] <= space["lr"].high for p in fine)
    outside = [p for p in fine if not all(box[n].low <= p[n] <= box[n].high for n in box)]
    inside = [p for p in runs["default"][n_coarse:] if p is not None]
    assert all(box[n].low <= p[n] <= box[n].high for p in inside for n in box)
    assert box != space and outside  # narrowed by default, drawn from the coarse ranges when kept
    with pytest.raises(ValueError, match="screen-only"):
        bench.run_one(problem, "tunebench_keep_reg", 10, 0, tmp_path)
