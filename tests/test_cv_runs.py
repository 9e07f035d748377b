"""Run groups (archlab.runs.cv, archlab.runs.seeds): layout, summaries, resume after a kill."""

import json

import pytest
import yaml

import archlab.runs.training as training
from archlab.errors import ConfigError
from archlab.runs.cv import cross_validate
from archlab.runs.seeds import repeat_seeds
from archlab.train.progress import Reporter

# Tiny runs: 8 steps, evaluated and checkpointed every 4, so a kill at step 6 resumes from step 4.
TINY = dict(
    max_steps=8,
    batch_size=32,
    eval_every=4,
    checkpoint_every=4,
    log_every=2,
    precision="fp32",
    device="cpu",
    model_overrides={"hidden_sizes": [16]},
    stack="off",  # the one-at-a-time group mechanics (a stacked group: tests/test_stacked_runs.py)
)


@pytest.fixture(autouse=True)
def _no_pictures(monkeypatch):
    # Drawing is tested elsewhere; it would dominate these runs' time.
    monkeypatch.setattr(training, "_draw_curves", lambda *a, **k: None)
    monkeypatch.setattr(training.PictureWriter, "picture", lambda *a, **k: None)


class _Killed(Exception):
    pass


class KillAt(Reporter):
    """Raises in the ``run``-th run started through it, at training step ``step`` (a simulated kill)."""

    def __init__(self, run: int, step: int):
        self.run, self.step, self.started = run, step, 0

    def start(self, total_steps, start_step, title):
        self.started += 1

    def record(self, rec):
        if self.started == self.run and rec.get("kind") == "train" and rec.get("step") == self.step:
            raise _Killed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "_draw_curves", lambda *a, **k: None)
        mp.setattr(training.PictureWriter, "picture", lambda *a, **k: None)
        return cross_validate("mlp_tabular", "iris", k=2, seed=0, out_dir=out, **TINY)


def test_one_run_per_fold_and_a_summary(reference):
    cv = reference
    assert [d.name for d in cv.member_dirs] == ["fold-0", "fold-1"] and cv.k == 2
    for d in cv.member_dirs:
        assert (d / "final_metrics.json").is_file() and (d / "config.yaml").is_file()
    saved = json.loads((cv.run_dir / "cv_summary.json").read_text())
    acc = saved["metrics"]["test_accuracy"]
    assert acc["n"] == 2 and acc["ci95_low"] <= acc["mean"] <= acc["ci95_high"]
    assert acc["mean"] == pytest.approx(sum(m["test_accuracy"] for m in cv.member_metrics) / 2)
    assert "±" in cv.mean_std("val_accuracy")
    info = json.loads((cv.member_dirs[1] / "data_info.json").read_text())
    assert info["fold"]["index"] == 1 and info["split_sizes"]["val"] + info["split_sizes"]["train"] == 105


def test_killed_cv_resumes_at_the_fold_and_step_and_matches(reference, tmp_path):
    with pytest.raises(_Killed):
        cross_validate("mlp_tabular", "iris", k=2, seed=0, out_dir=tmp_path, reporter=KillAt(run=2, step=6), **TINY)
    parent = next(tmp_path.iterdir())
    assert (parent / "fold-0" / "final_metrics.json").is_file()
    assert not (parent / "fold-1" / "final_metrics.json").exists()
    cv = cross_validate("mlp_tabular", "iris", k=2, seed=0, out_dir=tmp_path, **TINY)
    assert cv.run_dir == parent and cv.skipped == [0] and cv.resumed == [1]
    for key in ("val_loss", "test_loss", "test_accuracy", "step"):
        assert [m[key] for m in cv.member_metrics] == [m[key] for m in reference.member_metrics]
    again = cross_validate("mlp_tabular", "iris", k=2, seed=0, out_dir=tmp_path, **TINY)
    assert again.skipped == [0, 1] and again.summary == cv.summary


def test_run_name_with_other_arguments_is_refused(reference):
    with pytest.raises(ConfigError, match="other arguments"):
        cross_validate(
            "mlp_tabular",
            "iris",
            k=3,
            seed=0,
            out_dir=reference.run_dir.parent,
            run_name=reference.run_dir.name,
            **TINY,
        )


def test_repeat_seeds(tmp_path):
    r = repeat_seeds("mlp_tabular", "iris", n=2, base_seed=5, out_dir=tmp_path, **TINY)
    assert r.seeds == [5, 6] and [d.name for d in r.member_dirs] == ["seed-5", "seed-6"]
    assert [m["step"] for m in r.member_metrics] == [8, 8]
    assert json.loads((r.run_dir / "seeds_summary.json").read_text())["metrics"]["test_loss"]["n"] == 2
    assert repeat_seeds("mlp_tabular", "iris", n=2, base_seed=5, out_dir=tmp_path, **TINY).skipped == [0, 1]
    with pytest.raises(ConfigError, match="seed"):
        repeat_seeds("mlp_tabular", "iris", n=2, seed=1, out_dir=tmp_path)


def test_grouped_cv_keeps_each_group_out_of_its_folds_training(tmp_path):
    import numpy as np

    groups = np.arange(105) // 5  # iris's 105 training rows as 21 "subjects" of 5 rows
    cv = cross_validate("mlp_tabular", "iris", k=3, seed=0, groups=groups, out_dir=tmp_path, **TINY)
    seen = []
    for d in cv.member_dirs:
        fold = json.loads((d / "data_info.json").read_text())["fold"]
        val = np.asarray(fold["val_indices"])
        train = np.setdiff1d(np.arange(105), val)
        assert fold["grouped"] and not set(groups[val]) & set(groups[train])  # no subject on both sides
        seen += val.tolist()
    assert sorted(seen) == list(range(105))
    spec = yaml.safe_load((cv.member_dirs[0] / "config.yaml").read_text())["data"]
    assert spec["fold"]["grouped"]  # recorded, so a comparison does not rebuild the fold without its groups
