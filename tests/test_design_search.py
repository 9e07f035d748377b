"""The design search: the task's selection metric, targets read as the user means them, the
pruner sending the budget to the family that learns, and a study shared by workers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import archlab
from archlab.data import load
from archlab.runs.adapt import build_model
from archlab.runs.design import loader_options
from archlab.runs.design_steps import baseline_verdict
from archlab.tasks import TASKS, get_task
from archlab.train.config import TrainConfig
from archlab.train.evaluate import evaluate_split
from archlab.train.task_protocol import LOSS, Selection, selection_of

optuna = pytest.importorskip("optuna")

# (task, registry model, bundled data): a model the task trains on real data
SUPERVISED = [
    ("classification", "mlp_tabular", "iris"),
    ("regression", "mlp_regressor", "diabetes"),
    ("forecasting", "tcn_forecaster", "sunspots"),
    ("ctr", "wide_deep", "affairs"),
    ("node_classification", "gcn_karate", "sbm"),
    ("segmentation", "unet_small", "digits_seg"),
]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_declares_a_selection_that_is_not_a_baseline(name):
    sel = selection_of(get_task(name))
    assert isinstance(sel, Selection) and sel.mode in ("min", "max")
    assert "naive" not in sel.metric and "base" not in sel.metric
    if sel != LOSS:  # a named metric: one the task computes, with the direction the metric has
        task = get_task(name)
        from archlab.train.evaluate import metric_mode

        assert metric_mode(task, sel.key("val")) == sel.mode


@pytest.mark.parametrize(("name", "model", "data"), SUPERVISED)
def test_the_selection_metric_moves_when_the_model_does(name, model, data):
    bundle = load(data)
    task = get_task(name)
    task.setup(bundle, TrainConfig(), torch.device("cpu"))
    key = selection_of(task).key("val")
    values = []
    for seed in range(4):
        torch.manual_seed(seed)
        net = build_model(model, bundle, task)
        rec = evaluate_split(net, task, bundle.val, batch_size=256, device=torch.device("cpu"))
        assert key in rec, sorted(rec)
        values.append(rec[key])
    assert len(set(values)) > 1, values  # four initialisations, four sets of predictions
    if name == "forecasting":  # the baseline's error is the same whatever the model: never selected on
        assert key == "val_mae" and selection_of(task).mode == "min"


def test_selection_picks_by_its_direction():
    low, high = Selection("mae", "min"), Selection("accuracy", "max")
    assert low.best_index([0.5, 0.3, None, math.nan, 0.4]) == 1
    assert high.best_index([0.5, 0.9, 0.9]) == 1  # the first on ties
    assert high.best_index([None]) is None
    assert low.better(0.1, 0.2) and not high.better(0.1, 0.2)


def test_a_zero_one_float_target_is_read_as_classes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    path = tmp_path / "vote.csv"
    lines = ["a,b,c,vote"] + [f"{r[0]:.3f},{r[1]:.3f},{r[2]:.3f},{float(r[0] > 0):.1f}" for r in x]
    path.write_text("\n".join(lines) + "\n")
    bundle = load(path)
    assert bundle.task == "classification" and bundle.info["class_names"] == ["0", "1"]
    assert bundle.info["task_inferred"].startswith("classification: 2 distinct integer values")
    # the task a user names reaches the loader of a file (and not of a bundled name)
    opts = loader_options(str(path), "regression", None)
    assert opts == {"task": "regression"} and load(path, **opts).task == "regression"
    assert loader_options("iris", "classification", None) is None
    real = tmp_path / "price.csv"
    real.write_text("a,price\n" + "\n".join(f"{i},{i * 1.37:.2f}" for i in range(60)) + "\n")
    assert load(real).task == "regression"


def test_the_verdict_says_when_a_baseline_beats_the_network():
    acc = Selection("accuracy", "max")
    base = [{"name": "gradient boosting", "val": 0.9, "test": 0.95}, {"name": "other", "val": None, "test": None}]
    line = baseline_verdict({"test_accuracy": 0.90}, base, acc)
    assert line.startswith("The baseline is better") and "0.95" in line and "by 0.05" in line
    assert baseline_verdict({"test_accuracy": 0.97}, base, acc).startswith("The network beats")
    mae = Selection("mae", "min")
    assert baseline_verdict({"test_mae": 0.5}, [{"name": "naive", "test": 0.4}], mae).startswith("The baseline")
    assert baseline_verdict({}, base, acc) == ""
    # 110 of 113 right in float32 (the network) and in float64 (the baseline) is a tie, not a loss
    tie = baseline_verdict({"test_accuracy": float(torch.tensor(110 / 113))}, [{"name": "gb", "test": 110 / 113}], acc)
    assert tie.startswith("The network ties the best baseline") and "gb" in tie


# -- the search itself ---------------------------------------------------------------------------


def _plan(lrs: dict[str, float], steps: int = 60, budget_s: float = 20.0):
    from archlab.runs.search import FamilyPlan, SearchPlan

    fams = [
        FamilyPlan(
            name=name,
            family="mlp",
            rank=i + 1,
            overrides={},
            data_options={},
            params=None,
            latency_ms=None,
            lr=lr,
            lr_note="",
            seconds_per_step=0.01,
            overhead_s=0.5,
            max_steps=steps,
            eval_every=max(steps // 9, 10),  # an evaluation at each rung, as the design plans
        )  # fmt: skip
        for i, (name, lr) in enumerate(lrs.items())
    ]
    return SearchPlan(
        families=fams, metric="val_accuracy", mode="max", budget_s=budget_s, batch_size=32, seed=0, folds=None,
        train={"precision": "fp32", "log_every": 10},
    )  # fmt: skip


def _context(tmp_path, plan, bundle, worker="owner"):
    from archlab.runs.search import TrialContext

    return TrialContext(
        plan=plan, root=tmp_path, bundle_for=lambda f: bundle, data_spec_for=lambda f: {"name": "breast_cancer", "options": {}},
        task=None, worker=worker,
    )  # fmt: skip


def test_a_family_that_does_not_learn_gets_its_first_rung_and_the_budget_goes_elsewhere(tmp_path):
    from archlab.runs.search import create_study, storage_for, trial_row, work

    bundle = load("breast_cancer")
    # mlp_bn_dropout with a learning rate a million times too large (x 0.1 to 3 in the search): it never learns
    plan = _plan({"mlp_tabular": 3e-3, "mlp_bn_dropout": 3000.0}, budget_s=25.0)
    study = create_study(storage_for(f"sqlite:///{tmp_path / 'study.db'}"), "s", plan, {})
    work(study, _context(tmp_path, plan, bundle), max_trials=8)
    rows = [trial_row(t) for t in study.get_trials() if t.state.is_finished()]
    good = [r for r in rows if r.name == "mlp_tabular"]
    bad = [r for r in rows if r.name == "mlp_bn_dropout"]
    assert good and bad
    assert all(r.state in ("pruned", "failed") for r in bad), [(r.state, r.value) for r in bad]
    first_rung = max(plan.families[0].max_steps // 9, 10)  # the pruner's first rung (MIN_RUNG)
    assert all(r.rung is None or r.rung <= first_rung for r in bad)
    assert any(r.state == "complete" for r in good)
    assert sum(r.seconds or 0 for r in good) > sum(r.seconds or 0 for r in bad)
    for r in rows:  # every trial is an ordinary run directory
        assert (tmp_path / r.run_dir / "config.yaml").is_file()


def test_two_workers_share_a_study_and_run_every_trial_once(tmp_path):
    from archlab.runs.search import create_study, load_study, storage_for, trial_row, work

    bundle = load("breast_cancer")
    plan = _plan({"mlp_tabular": 3e-3}, steps=20, budget_s=1e9)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    create_study(storage_for(url), "shared", plan, {"design_dir": str(tmp_path)})
    # two workers, one after the other here (the PostgreSQL test runs them at once)
    work(load_study(storage_for(url), "shared"), _context(tmp_path, plan, bundle, "w1"), max_trials=3)
    work(load_study(storage_for(url), "shared"), _context(tmp_path, plan, bundle, "w2"), max_trials=5)
    trials = [t for t in load_study(storage_for(url), "shared").get_trials() if t.state.is_finished()]
    assert len(trials) == 5 and {t.user_attrs["worker"] for t in trials} == {"w1", "w2"}
    rows = [trial_row(t) for t in trials]
    assert len({r.run_dir for r in rows}) == len(rows)
    for r in rows:  # a pruned trial is a run stopped early at its rung, with final metrics like any other
        final = json.loads((tmp_path / r.run_dir / "final_metrics.json").read_text())
        assert final["step"] == (20 if r.state == "complete" else r.rung)
        assert final["stopped_early"] == (r.state == "pruned")


def test_a_design_killed_mid_trial_resumes_and_counts_every_trial_once(tmp_path, monkeypatch):
    from archlab.runs import design_steps
    from archlab.runs.design import resume_design
    from archlab.train import Reporter

    for step in ("benchmark", "export", "report"):
        monkeypatch.setitem(design_steps.STEP_FNS, step, lambda d: {"stub": True})

    class Kill(BaseException):
        """Not an Exception: nothing records it, as with SIGKILL."""

    class KillInSecondTrial(Reporter):
        def __init__(self):
            self.trials = 0

        def start(self, total_steps, start_step, title):
            self.trials += 1

        def record(self, rec):
            if self.trials == 2 and rec.get("kind") == "eval" and rec["step"] >= 2:
                raise Kill

    out = tmp_path / "d"
    with pytest.raises(Kill):
        archlab.runs.design.design(
            "breast_cancer", out_dir=out, params_max=3000, budget_s=4, candidates=2, reporter=KillInSecondTrial()
        )
    m = json.loads((out / "design.json").read_text())
    assert m["steps"]["search"]["state"] == "running"
    killed_dir = out / "trials" / "t001"
    assert (killed_dir / "config.yaml").is_file() and not (killed_dir / "final_metrics.json").exists()
    res = resume_design(out)
    m = json.loads((out / "design.json").read_text())
    trials = m["steps"]["search"]["result"]["trials"]
    counted = [t for t in trials if t["state"] in ("complete", "pruned")]
    dirs = [t["run_dir"] for t in counted]
    assert len(dirs) == len(set(dirs)) and "trials/t001" in dirs  # the killed run resumed, counted once
    retry = next(t for t in counted if t["run_dir"] == "trials/t001")
    assert retry["retry_of"] == 1 and retry["number"] != 1
    assert res.winner is not None and (out / "winner" / "final_metrics.json").is_file()


def test_baselines_score_on_the_same_split_as_the_networks():
    from archlab.advise.baselines import fit_baselines

    bundle = load("sunspots")
    naive, ets = fit_baselines(bundle, "forecasting")
    assert naive.name.startswith("seasonal naive") and ets.name.startswith("exponential smoothing")
    # the seasonal naive baseline is the forecasting task's own naive figure on the same windows
    task = get_task("forecasting")
    task.setup(bundle, TrainConfig(), torch.device("cpu"))
    net = build_model("tcn_forecaster", bundle, task)
    rec = evaluate_split(net, task, bundle.val, batch_size=256, device=torch.device("cpu"))
    assert naive.val == pytest.approx(rec["val_naive_mae"], rel=1e-5)
    assert 0 < ets.val < 2 * naive.val and ets.test is not None
    (hgb,) = fit_baselines(load("iris"), "classification")
    assert hgb.metric == "accuracy" and 0.5 < hgb.test <= 1.0


def test_points_and_click_through_data_get_gradient_boosting_on_their_own_metric():
    from archlab.advise.baselines import fit_baselines

    (points,) = fit_baselines(load("moons"), "classification")
    assert points.metric == "accuracy" and 0.5 < points.test <= 1.0
    (ctr,) = fit_baselines(load("affairs"), "ctr")  # dense features beside categorical ids, scored by AUROC
    assert ctr.metric == "auroc" and ctr.note == "" and 0.5 < ctr.test < 1.0 and 0.5 < ctr.val < 1.0
    (spectra,) = fit_baselines(load("ucr:Tecator"), "regression")  # a value per series: trees on its values
    assert spectra.metric == "mae" and spectra.note == "" and spectra.test > 0


def test_a_whole_graph_is_selected_on_its_validation_nodes_not_folds():
    from archlab.runs.design_steps import _selection_split

    class State:  # the two fields the selection split reads
        bundle = load("karate")
        args = {"folds": 3}

    assert len(State.bundle.val) < 50  # small enough that a table would get cross-validation
    folds, words = _selection_split(State())  # type: ignore[arg-type]
    assert folds is None and "graph is one sample" in words


def test_the_minirocket_baseline_leaves_the_networks_thread_count_alone():
    from archlab.advise.baselines import fit_baselines

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (rocket,) = fit_baselines(load("ucr:UnitTest"), "classification")
        assert rocket.name.startswith("MiniRocket") and rocket.note == "" and rocket.test > 0.5
        assert torch.get_num_threads() == 1  # numba's OpenMP layer had set it to every core
    finally:
        torch.set_num_threads(before)


def test_text_gets_tfidf_and_logistic_regression():
    import dataclasses

    from archlab.advise.baselines import fit_baselines

    full = load("shakespeare_genre")

    def every(split, n):  # an even sample keeps it quick (the splits are ordered by play)
        return split.take(torch.linspace(0, len(split) - 1, n).long())

    bundle = dataclasses.replace(
        full, train=every(full.train, 900), val=every(full.val, 300), test=every(full.test, 300)
    )
    (tfidf,) = fit_baselines(bundle, "classification")
    assert tfidf.name.startswith("TF-IDF") and tfidf.note == "" and 0.0 < tfidf.test <= 1.0 and tfidf.val is not None


class _State:
    """The parts of a design's state that choose the winner's length."""

    def __init__(self, budget_left_s: float, trial_steps: int):
        self.budget_left_s = budget_left_s
        self.results = {
            "select": {"winner": "mlp", "winner_trial": 3},
            "search": {"trials": [{"number": 2, "steps": 999}, {"number": 3, "steps": trial_steps}]},
        }

    def result(self, step: str) -> dict:
        return self.results[step]


@pytest.mark.parametrize("folds", [None, 3])
def test_the_winner_trains_as_validated_with_folds_and_spends_the_budget_without(folds):
    from archlab.runs.design_steps import _winner_steps
    from archlab.runs.search import FamilyPlan, SearchPlan

    f = FamilyPlan("mlp", "mlp", 1, {}, {}, 100, None, 1e-3, "", 0.015625, 1.0, 200, 50)
    plan = SearchPlan([f], "val_accuracy", "max", 60.0, 32, 0, folds)
    roomy, tight = _winner_steps(_State(21.0, 150), f, plan), _winner_steps(_State(0.5, 150), f, plan)
    if folds:  # the cross-validated length, whatever the budget left
        assert roomy == tight == 150
    else:  # 20 s after the overhead at 1/64 s a step buys 1,280 steps; never fewer than the trial's 150
        assert (roomy, tight) == (1280, 150)


def test_with_folds_the_search_gets_all_but_the_winners_one_run():
    from archlab.runs.design_budget import search_seconds as _search_seconds

    assert _search_seconds(300, None, 3, None) == 150  # no folds: half, the winner trains longer
    assert _search_seconds(300, 0.3, 3, 3) == pytest.approx(90)  # a share the user gave is kept
    s = _search_seconds(300, None, 3, 3)  # a trial is s / 4; the winner's one run half of a trial
    assert s + s / 4 / 2 == pytest.approx(300)
