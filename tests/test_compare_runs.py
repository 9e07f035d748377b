"""archlab compare RUN_A RUN_B (archlab.runs.compare_runs): same samples, refusals, wording."""

import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as st

import archlab.runs.training as training
from archlab.cli.main import main
from archlab.data import load
from archlab.errors import ConfigError
from archlab.report import render
from archlab.runs import fit
from archlab.runs.compare_runs import _verdict, compare_runs
from archlab.runs.cv import cross_validate
from archlab.runs.seeds import repeat_seeds
from archlab.runs.stats import TestResult

TINY = dict(max_steps=8, batch_size=32, eval_every=4, checkpoint_every=4, precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def quiet():
    """No curves or pictures: drawing is tested elsewhere and would dominate these tiny runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_draw_curves", lambda *a, **k: None)
        mp.setattr(training.PictureWriter, "picture", lambda *a, **k: None)
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory, quiet):
    """On wine (36 test samples): a trained run, a barely trained one, a copy of the first, and iris."""
    out = tmp_path_factory.mktemp("runs")
    common = dict(
        out_dir=out, device="cpu", precision="fp32", batch_size=32, eval_every=40, checkpoint_every=40,
        model_overrides={"hidden_sizes": [16]},
    )  # fmt: skip
    good = fit("mlp_tabular", "wine", run_name="good", max_steps=40, lr=1e-2, **common).run_dir
    poor = fit("mlp_tabular", "wine", run_name="poor", max_steps=1, lr=1e-5, **common).run_dir
    other = fit(
        "mlp_tabular", load("wine", seed=1), data_spec={"name": "wine", "options": {"seed": 1}},
        run_name="other", max_steps=1, **common,
    ).run_dir  # fmt: skip
    iris = fit("mlp_tabular", "iris", run_name="iris", max_steps=1, **common).run_dir
    copy = out / "copy" / "good"
    shutil.copytree(good, copy)
    return {"good": good, "poor": poor, "copy": copy, "other": other, "iris": iris}


def test_interval_is_over_the_same_test_samples(runs):
    c = compare_runs(runs["good"], runs["poor"], n_boot=2000)
    n_test = len(load("wine").test)
    assert c.a.n == c.b.n == n_test and c.design == "same test samples"
    # The per-sample results are the runs' final weights on their test split: they reproduce the recorded accuracy.
    for side in (c.a, c.b):
        assert side.value == pytest.approx(side.recorded, abs=1e-6)
    assert c.estimate == pytest.approx(c.a.value - c.b.value)
    assert c.ci95_low <= c.estimate <= c.ci95_high and "BCa" in c.interval
    # McNemar: the discordant samples account for the whole accuracy difference.
    d = c.details
    assert (d["a_right_b_wrong"] - d["a_wrong_b_right"]) / n_test == pytest.approx(c.estimate)
    # Paired: a run against a copy of itself differs on no sample, so the interval is exactly [0, 0].
    same = compare_runs(runs["good"], runs["copy"], n_boot=500)
    assert (same.estimate, same.ci95_low, same.ci95_high, same.p_value) == (0, 0, 0, 1) and not same.significant
    assert same.b.label == "copy/good" and same.a.label.endswith("/good")  # same names: labelled with their parents


def test_significance_wording_and_the_test_used(runs):
    c = compare_runs(runs["good"], runs["poor"], n_boot=2000)
    assert c.test.startswith("McNemar") and c.significant and c.p_value < 0.05 and c.ci95_low > 0
    assert (
        c.verdict.startswith("good beats poor") and f"p = {c.p_value:.3g} < 0.05" in c.verdict and c.test in c.verdict
    )
    flipped = compare_runs(runs["poor"], runs["good"], n_boot=2000)
    assert flipped.verdict.startswith("good beats poor") and flipped.ci95_high < 0
    assert flipped.p_value == pytest.approx(c.p_value)  # McNemar is symmetric in A and B
    boot = compare_runs(runs["good"], runs["poor"], test="bootstrap", n_boot=2000)
    assert boot.test == "paired bootstrap" and boot.estimate == c.estimate and boot.significant
    same = compare_runs(runs["good"], runs["copy"], n_boot=500)
    assert same.verdict.startswith("not significant") and "beats" not in same.verdict
    # Lower-is-better metrics: a negative difference favours A.
    r = TestResult("paired t", -0.2, -0.3, -0.1, 0.01, "t", 3, 3)
    assert _verdict(("a", "b"), "test_loss", False, r, "x").startswith("a beats b")
    assert _verdict(("a", "b"), "test_accuracy", True, r, "x").startswith("b beats a")
    with pytest.raises(ConfigError, match="test must be one of"):
        compare_runs(runs["good"], runs["poor"], test="wilcoxon")


def test_mismatched_test_splits_are_refused(runs):
    with pytest.raises(ConfigError, match="same samples.*wine \\{'seed': 1\\}"):
        compare_runs(runs["good"], runs["other"])
    with pytest.raises(ConfigError, match="same samples.*iris"):
        compare_runs(runs["good"], runs["iris"])
    with pytest.raises(ConfigError, match="test_accuracy"):
        compare_runs(runs["good"], runs["poor"], metric="test_loss")


def test_cli_and_renderers(runs, capsys):
    assert main(["compare", str(runs["good"]), str(runs["poor"]), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "good beats poor" in out and "over the same 36 test samples" in out
    assert "Test: McNemar" in out and "p = " in out and "BCa" in out
    assert main(["compare", str(runs["good"]), str(runs["poor"]), "--format", "json", "--test", "bootstrap"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["significant"] is True and saved["test"] == "paired bootstrap" and 0 <= saved["p_value"] < 0.05
    c = compare_runs(runs["good"], runs["copy"], n_boot=500)
    text = render(c, "text")
    assert "not significant" in text and "±" not in text and "test: McNemar" in text and "p = 1" in text


@pytest.fixture(scope="module")
def groups(tmp_path_factory, quiet):
    out = tmp_path_factory.mktemp("groups")
    small = cross_validate("mlp_tabular", "iris", k=2, out_dir=out, run_name="small", **TINY)
    wide = cross_validate(
        "mlp_tabular", "iris", k=2, out_dir=out, run_name="wide", model_overrides={"hidden_sizes": [32]}, **TINY
    )
    seeds = repeat_seeds("mlp_tabular", "iris", n=2, out_dir=out, run_name="seeds", **TINY)
    seeds_wide = repeat_seeds(
        "mlp_tabular", "iris", n=2, out_dir=out, run_name="seeds_wide", model_overrides={"hidden_sizes": [32]}, **TINY
    )
    seeds_other = repeat_seeds("mlp_tabular", "iris", n=3, base_seed=5, out_dir=out, run_name="seeds_other", **TINY)
    return small, wide, seeds, seeds_wide, seeds_other


def test_matched_folds_use_the_corrected_t(groups, runs):
    small, wide, _, _, _ = groups
    c = compare_runs(small.run_dir, wide.run_dir)
    assert c.test == "Nadeau-Bengio corrected t" and c.design == "matched cross-validation folds"
    assert c.method.startswith("Nadeau-Bengio corrected t, over the same 2 folds") and c.a.n == 2
    a = np.array([m["test_accuracy"] for m in small.member_metrics])
    b = np.array([m["test_accuracy"] for m in wide.member_metrics])
    assert c.estimate == pytest.approx((a - b).mean())
    # n_test / n_train from the recorded fold sizes: iris' 30 test samples over each fold's training part.
    sizes = json.loads((small.run_dir / "cv_summary.json").read_text())["fold_sizes"]
    ratio = np.mean([s["test"] / s["train"] for s in sizes])
    assert [s["train"] + s["val"] for s in sizes] == [len(load("iris").train)] * 2
    assert c.details["test_train_ratio"] == pytest.approx(ratio)
    if np.ptp(a - b) > 0:  # the correction widens the plain paired t's interval
        half = st.t.ppf(0.975, 1) * math.sqrt((1 / 2 + ratio) * (a - b).var(ddof=1))
        assert c.ci95_high - c.estimate == pytest.approx(half)
    lower = compare_runs(small.run_dir, wide.run_dir, metric="test_loss")
    assert not lower.higher_is_better
    with pytest.raises(ConfigError, match="a run with a run or a group with a group"):
        compare_runs(small.run_dir, runs["good"])
    with pytest.raises(ConfigError, match="no 'bogus'"):
        compare_runs(small.run_dir, wide.run_dir, metric="bogus")


def test_seed_groups_paired_when_matched_welch_otherwise(groups):
    small, _, seeds, seeds_wide, seeds_other = groups
    paired = compare_runs(seeds.run_dir, seeds_wide.run_dir)
    assert paired.test == "paired t" and paired.design == "matched seeds"
    a = [m["test_accuracy"] for m in seeds.member_metrics]
    b = [m["test_accuracy"] for m in seeds_wide.member_metrics]
    assert paired.estimate == pytest.approx(np.mean(a) - np.mean(b))
    welch = compare_runs(seeds.run_dir, seeds_other.run_dir)
    assert welch.test == "Welch t" and welch.design == "independent seed groups"
    with pytest.raises(ConfigError, match="two cross-validations or two seed groups"):
        compare_runs(small.run_dir, seeds.run_dir)


def test_group_refusals(groups, tmp_path):
    small, wide = groups[0], groups[1]
    # Other folds (another fold seed): no fold-by-fold pairing, so no test fits.
    other = tmp_path / "other_folds"
    shutil.copytree(wide.run_dir, other)
    manifest = json.loads((other / "group.json").read_text())
    manifest["arguments"]["seed"] = 1
    (other / "group.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="same folds.*--cv K and seed"):
        compare_runs(small.run_dir, other)
    # A group written before fold sizes were recorded: the corrected t cannot be computed.
    old = tmp_path / "old"
    shutil.copytree(small.run_dir, old)
    summary = json.loads((old / "cv_summary.json").read_text())
    del summary["fold_sizes"]
    (old / "cv_summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="records no fold sizes.*rerun that cross-validation"):
        compare_runs(old, wide.run_dir)


def test_two_folds_of_one_cv_share_the_test_split(groups):
    small = groups[0]
    c = compare_runs(small.member_dirs[0], small.member_dirs[1], n_boot=500)
    # Each fold's test split is rebuilt with that fold's normalisation: the recorded accuracies come back.
    assert c.a.value == pytest.approx(c.a.recorded, abs=1e-6) and c.b.value == pytest.approx(c.b.recorded, abs=1e-6)
    assert c.a.n == len(load("iris").test)


def test_group_spread_in_the_report(groups):
    from archlab.report.document import build_report
    from archlab.report.html import report_html
    from archlab.report.markdown import report_markdown
    from archlab.report.spread import group_spread

    small = groups[0]
    saved = json.loads((small.run_dir / "cv_summary.json").read_text())["metrics"]["test_accuracy"]
    s = group_spread(small.run_dir)
    assert s.kind == "cv" and s.members == ["fold-0", "fold-1"] and s.member is None
    md = render(s, "md")
    assert "Nadeau-Bengio corrected t" in md  # the folds' interval is the corrected one, and says so
    assert f"{saved['mean']:.4g} ± {saved['std']:.2g}" in md and f"[{saved['ci95_low']:.4g}, " in md
    assert group_spread(small.member_dirs[1]).member == "fold-1"
    # The design report of the group describes its first member and shows the group's spread.
    rep = build_report(small.run_dir, bench=False, deploy=False, advisor=False)
    assert rep.run["path"].endswith("fold-0") and rep.to_dict()["sections"]["spread"]["metrics"] == s.metrics
    assert "Spread over the group" in report_markdown(rep, {}) and "Spread over the group" in report_html(rep)
    assert group_spread(small.member_dirs[0].parent.parent) is None  # not a group
