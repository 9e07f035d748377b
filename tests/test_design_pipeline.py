"""runs/design.py, cli/design.py and report/choice.py: ``archlab design`` end to end on iris, a
design killed mid-way and resumed, and a design directory as a report subject."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

import archlab
from archlab.cli.main import main
from archlab.errors import ConfigError
from archlab.report.document import SECTIONS, build_report
from archlab.runs.design import STEPS, pareto_front, resume_design

# iris: 15 validation samples, so trials are compared by 2-fold CV; two small MLPs.
TINY = dict(params_max=3000, budget_s=3, candidates=2, folds=2)


def _manifest(path: Path) -> dict:
    return json.loads((path / "design.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, object, list]:
    out = tmp_path_factory.mktemp("design") / "iris"
    events: list = []
    res = archlab.design("iris", out_dir=out, progress=events.append, report_options={"deploy": False}, **TINY)
    return out, res, events


def test_design_end_to_end_writes_every_step_into_the_directory(finished):
    out, res, events = finished
    m = _manifest(out)
    assert [m["steps"][s]["state"] for s in STEPS] == ["done"] * len(STEPS)
    assert not any(m["steps"][s].get("error") for s in STEPS)
    for f in ("recommendation.json", "sized.json", "bench.json", "export.json", "report.html"):
        assert (out / f).is_file(), f
    sel = m["steps"]["select"]["result"]
    trained = [r for r in sel["rows"] if r["trained"]]
    assert trained and sel["metric"] == "val_accuracy" and sel["mode"] == "max"
    # the winner is the trial with the best mean CV validation accuracy; each trial a 2-fold CV group
    best = max(trained, key=lambda r: r["value"])
    assert (res.winner, sel["winner_trial"]) == (best["preset"], best["trial"])
    plan = m["steps"]["search"]["result"]["plan"]
    for r in trained:
        assert r["cv"]["k"] == 2
        summary = json.loads((out / "trials" / f"t{r['trial']:03d}" / "cv_summary.json").read_text())
        assert len(summary["members"]) == 2
    # every family of the plan had its first trial, whatever the budget
    assert {f["name"] for f in plan["families"]} <= {r["preset"] for r in sel["rows"]}
    # the trials were cross-validated (small data), so the winner trains exactly as its trial did
    final = json.loads((out / "winner" / "final_metrics.json").read_text())
    won = next(t for t in m["steps"]["search"]["result"]["trials"] if t["number"] == sel["winner_trial"])
    assert final["step"] == m["steps"]["winner"]["result"]["max_steps"] == won["steps"]
    # the baseline sits beside the networks, and the verdict says which is better
    assert m["steps"]["baselines"]["result"]["rows"][0]["name"].startswith("gradient boosting")
    assert res.verdict.startswith(("The baseline is better", "The network beats", "The network ties"))
    assert 0 <= res.test_metrics["test_accuracy"] <= 1
    assert m["steps"]["export"]["result"]["parity_ok"] is True
    assert (out / "export" / m["steps"]["export"]["result"]["file"]).is_file()
    # progress: every step started, with the budget left, never increasing
    starts = [e["step"] for e in events if e["state"] == "start"]
    assert starts == list(STEPS)
    left = [e["budget_left_s"] for e in events]
    assert left == sorted(left, reverse=True) and left[0] == TINY["budget_s"]


def test_design_report_explains_the_choice_and_has_the_six_deliverables(finished):
    out, res, _ = finished
    html = (out / "report.html").read_text()
    ids = re.findall(r'<section id="([a-z_]+)"><h2>', html)
    assert ids[0] == "choice" and set(SECTIONS) <= set(ids)
    assert "Why this model" in html and res.winner in html
    rep = build_report(out, bench=False, deploy=False)
    assert rep.choice["winner"] == res.winner
    assert {r["preset"] for r in rep.choice["rows"]} <= set(
        _manifest(out)["steps"]["recommend"]["result"]["candidates"]
    )
    assert any(r.get("pareto") for r in rep.choice["rows"])
    assert "choice_pareto" in rep.figures and "<circle" in rep.figures["choice_pareto"].data
    assert rep.rationale["advisor"]["this_model_rank"] is not None
    assert rep.bench is not None and "bench_latency" in rep.figures  # the design's bench.json, not measured again
    assert rep.to_dict()["sections"]["choice"]["winner"] == res.winner


def test_design_report_renders_in_chromium_without_overflow_or_errors(finished, tmp_path):
    from test_report_browser import WIDTH, _chromium, _measure, _run  # the browser harness, shared

    out, _, _ = finished
    dom = _run(_chromium(), tmp_path, "--dump-dom", (out / "report.html").as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'<section id="choice"><h2>Why this model</h2>', dom.stdout)
    measure = _measure(dom.stdout)
    assert 0 < measure["sw"] <= WIDTH and measure["dw"] > 0 and measure["errors"] == 0, measure
    ids = re.findall(r'<section id="([a-z_]+)"><h2>', dom.stdout)
    assert measure["sections"] == len(ids) and measure["hidden"] == 0, measure


def test_cli_resume_of_a_finished_design_skips_every_step_and_prints_the_summary(finished, capsys):
    out, res, _ = finished
    before = (out / "winner" / "final_metrics.json").stat().st_mtime_ns
    assert main(["design", "--resume", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    assert f"Chosen model: {res.winner}" in captured.out and "report.html" in captured.out
    assert captured.err.count("skipped") == len(STEPS)
    assert (out / "winner" / "final_metrics.json").stat().st_mtime_ns == before


def test_bad_arguments_and_directories_are_config_errors(tmp_path, finished):
    with pytest.raises(ConfigError, match="budget_s"):
        archlab.design("iris", out_dir=tmp_path / "x", budget_s=0)
    with pytest.raises(ConfigError, match="already holds a design"):
        archlab.design("iris", out_dir=finished[0], **TINY)
    with pytest.raises(ConfigError, match="design.json"):
        resume_design(tmp_path)
    assert main(["design", "iris"]) == 2  # no -o
    with pytest.raises(ConfigError, match="lrr"):  # a bad recipe key, before anything trains
        archlab.design("iris", out_dir=tmp_path / "y", train={"lrr": 1.0}, **TINY)
    assert not (tmp_path / "y").exists()
    assert main(["design", "iris", "-o", str(tmp_path / "z"), "--set", "model.width=3"]) == 2
    assert not (tmp_path / "z").exists()


def test_cli_set_passes_loader_options(tmp_path, monkeypatch):
    """``--set data.K=V`` reaches the loader: a CSV whose target is not the last column."""
    seen = {}

    def fake_design(data, **kwargs):
        seen.update(kwargs, data=data)
        raise ConfigError("stop here")

    monkeypatch.setattr("archlab.runs.design.design", fake_design)
    assert (
        main(["design", "t.csv", "-o", str(tmp_path / "d"), "--set", "data.target=label", "--set", "train.lr=0.01"])
        == 2
    )
    assert seen["data_options"] == {"target": "label"} and seen["train"] == {"lr": 0.01}


def test_pareto_front_marks_the_non_dominated_candidates():
    rows = [
        {"value": 0.9, "latency_ms": 1.0},  # front: best metric
        {"value": 0.8, "latency_ms": 0.5},  # front: fastest
        {"value": 0.8, "latency_ms": 1.0},  # dominated by both
        {"value": 0.7, "latency_ms": 0.5},  # dominated by the fastest
        {"value": 0.9, "latency_ms": 1.0},  # a tie with the first: neither dominates
    ]
    assert pareto_front(rows, "max") == [True, True, False, False, True]
    lower = [{"value": 0.3, "latency_ms": 1}, {"value": 0.2, "latency_ms": 1}]
    assert pareto_front(lower, "min") == [False, True]
