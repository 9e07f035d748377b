"""``archlab compare RUN_A RUN_B``: does A beat B, or is the difference noise?

Two kinds of comparison, chosen by what the arguments are:

- **Two runs** (run directories): both are evaluated on their test split, sample by sample, and
  the difference in accuracy gets a paired bootstrap interval over those samples
  (:func:`archlab.runs.stats.paired_bootstrap`). Pairing needs the *same* test samples in the
  same order: each run's data is reloaded from its config.yaml and the test split's contents are
  hashed; different hashes are refused (:class:`archlab.errors.ConfigError`), since an unpaired
  difference of two accuracies on different samples mixes the models' gap with the samples'.
- **Two groups** (CV or seed parents, :mod:`archlab.runs.cv`, :mod:`archlab.runs.seeds`): the
  members' final test metric, compared with :func:`archlab.runs.stats.seed_difference`; paired
  (fold i with fold i, seed s with seed s) when the groups hold the same folds or seeds of the
  same data, Welch otherwise.

Why evaluate at compare time rather than record per-sample results during training: it works
for every run already on disk (and for runs trained before this existed), it keeps the training
engine unchanged, it evaluates exactly the weights the run keeps (its ``best/`` or ``last/``),
and it costs one pass over the test split. The price is that the data must reload as it was
trained on, which config.yaml's data spec provides (a fold run rebuilds its fold).

A winner is named only when the 95% interval excludes zero; otherwise the result says the
difference is not significant.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from archlab.display import NotebookDisplay
from archlab.errors import ConfigError
from archlab.report.spread import SUMMARY_FILES
from archlab.runs.stats import paired_bootstrap, seed_difference
from archlab.train.evaluate import metric_mode

log = logging.getLogger("archlab.runs")


@dataclass
class RunSide:
    """One side of a comparison.

    Attributes:
        path: the run or group directory.
        label: how the report names it.
        kind: ``"run"``, ``"cv"`` or ``"seeds"``.
        value: the test metric (a run's, recomputed from its per-sample results; a group's mean).
        std: spread over a group's members (None for a run).
        n: test samples (a run) or members (a group).
        recorded: a run's ``final_metrics.json`` value, for reference (None for a group).
    """

    path: str
    label: str
    kind: str
    value: float
    std: float | None
    n: int
    recorded: float | None = None


@dataclass
class RunsComparison(NotebookDisplay):
    """The difference ``A - B`` in one test metric with its 95% interval and the verdict."""

    a: RunSide
    b: RunSide
    metric: str
    higher_is_better: bool
    method: str
    diff: float
    ci95_low: float
    ci95_high: float
    significant: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------- entry
def group_kind(path: Path) -> str | None:
    """``"cv"`` / ``"seeds"`` when ``path`` is a group parent (has ``group.json``), else None."""
    manifest = path / "group.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("kind")


def is_run_or_group(target: str | Path) -> bool:
    """Whether ``target`` is a training run directory or a group parent (what this module compares)."""
    path = Path(target)
    return path.is_dir() and ((path / "config.yaml").is_file() or (path / "group.json").is_file())


def compare_runs(
    run_a: str | Path, run_b: str | Path, *, metric: str | None = None, n_boot: int = 10_000, seed: int = 0
) -> RunsComparison:
    """Compare two runs (paired bootstrap over their shared test samples) or two groups (across members).

    Args:
        run_a, run_b: two run directories, or two CV / seed group parents.
        metric: the test metric (default ``test_accuracy``; for runs it must be that, the one
            metric with a per-sample form here).
        n_boot, seed: bootstrap resamples and generator seed (runs only).

    Raises:
        ConfigError: not runs or groups, a run and a group mixed, different test splits, a group
            not finished, a metric the runs or members do not have.
    """
    a, b = Path(run_a), Path(run_b)
    for p in (a, b):
        if not is_run_or_group(p):
            raise ConfigError(f"expected a run directory (config.yaml) or a CV/seed group (group.json); got {p}")
    kinds = group_kind(a), group_kind(b)
    if (kinds[0] is None) != (kinds[1] is None):
        raise ConfigError(
            f"compare a run with a run or a group with a group; got {a} ({kinds[0] or 'run'}) "
            f"and {b} ({kinds[1] or 'run'})"
        )
    labels = _labels(a, b)
    if kinds[0] is None:
        return _compare_two_runs(a, b, labels, metric or "test_accuracy", n_boot, seed)
    return _compare_groups(a, b, labels, metric or "test_accuracy")


def _labels(a: Path, b: Path) -> tuple[str, str]:
    """Directory names, or parent/name when the names alone are the same (``seed-0`` and ``seed-0``)."""
    if a.resolve() == b.resolve():
        raise ConfigError(f"compare needs two different runs; got {a} twice")
    if a.name != b.name:
        return a.name, b.name
    return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"


def _verdict(labels: tuple[str, str], metric: str, higher: bool, d: dict[str, Any], how: str) -> str:
    interval = f"{d['diff']:+.4g} [95% CI {d['ci95_low']:+.4g}, {d['ci95_high']:+.4g}]"
    if not d["significant"]:
        return (
            f"not significant: {metric} A - B = {interval}, the interval includes 0 ({how}); "
            "neither run is shown to be better"
        )
    a_better = (d["diff"] > 0) == higher
    winner, loser = labels if a_better else labels[::-1]
    return f"{winner} beats {loser}: {metric} A - B = {interval}, the interval excludes 0 ({how})"


# ------------------------------------------------------------------------------------ two runs
def _compare_two_runs(a: Path, b: Path, labels: tuple[str, str], metric: str, n_boot: int, seed: int):
    if metric != "test_accuracy":
        raise ConfigError(
            f"comparing two runs sample by sample works on test_accuracy; got metric {metric!r} "
            "(compare CV or seed groups for other metrics)"
        )
    ca, fa = _test_correctness(a)
    cb, fb = _test_correctness(b)
    if fa["sha256"] != fb["sha256"]:
        raise ConfigError(
            f"a paired comparison needs both runs tested on the same samples; {a} was tested on "
            f"{fa['describe']} and {b} on {fb['describe']}. Retrain one on the other's data "
            "(same dataset, options and seed), or compare groups of runs (--seeds / --cv)"
        )
    d = paired_bootstrap(ca, cb, n_boot=n_boot, seed=seed)
    sides = [
        RunSide(str(p), lab, "run", float(c.mean()), None, len(c), _recorded(p, metric))
        for p, lab, c in ((a, labels[0], ca), (b, labels[1], cb))
    ]
    how = f"paired bootstrap over the same {d['n']} test samples, {n_boot} resamples"
    return RunsComparison(
        sides[0], sides[1], metric, True, how, d["diff"], d["ci95_low"], d["ci95_high"], d["significant"],
        _verdict(labels, metric, True, d, how),
    )  # fmt: skip


def _recorded(path: Path, metric: str) -> float | None:
    final = path / "final_metrics.json"
    if not final.is_file():
        return None
    value = json.loads(final.read_text(encoding="utf-8")).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _split_digest(split: Any) -> str:
    """SHA-256 of a split's tensors (shapes, dtypes and bytes): equal digests mean the same samples."""
    h = hashlib.sha256()
    for t in (*split.inputs, split.target):
        if t is None:
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _test_correctness(run_dir: Path) -> tuple[Any, dict[str, str]]:
    """Per test sample 1.0 / 0.0 correctness of the run's final weights, and the test split's identity.

    The identity is the digest of the test split as the dataset loader gives it, before a
    fold's renormalisation, so two folds of one CV (and runs of the same data and seed) match.
    """
    import numpy as np

    from archlab.data import load
    from archlab.runs.use import load_run, saved_train
    from archlab.train.config import TrainConfig
    from archlab.train.evaluate import predict_split

    saved, model, task, _ = load_run(run_dir)
    spec = saved.get("data") or {}
    if not spec.get("name"):
        raise ConfigError(f"{run_dir}/config.yaml records no data name; cannot rebuild its test split")
    bundle = load(spec["name"], **(spec.get("options") or {}))
    if bundle.test is None:
        raise ConfigError(f"{run_dir}: dataset {spec['name']!r} has no test split to compare on")
    identity = {
        "sha256": _split_digest(bundle.test),
        "describe": f"{spec['name']} {spec.get('options') or {}} test split ({len(bundle.test)} samples)",
    }
    if spec.get("fold"):
        bundle = _rebuild_fold(run_dir, bundle, spec["fold"])
    if task.name != "classification":
        raise ConfigError(
            f"{run_dir}: comparing two runs sample by sample needs a classification run; got task "
            f"{task.name!r} (compare CV or seed groups instead)"
        )
    task.setup(bundle, TrainConfig.build(saved_train(saved)), torch.device("cpu"))
    test = bundle.test
    pred = predict_split(model, task, test.inputs, batch_size=512, device=torch.device("cpu"))
    if pred.shape != test.target.shape:
        raise ConfigError(
            f"{run_dir}: expected one predicted class per test sample {tuple(test.target.shape)}; "
            f"got predictions of shape {tuple(pred.shape)}"
        )
    return (pred == test.target.cpu()).double().numpy().astype(np.float64), identity


def _rebuild_fold(run_dir: Path, bundle: Any, fold: dict[str, Any]) -> Any:
    """The fold bundle a CV member was trained on (its test split renormalised as in training)."""
    from archlab.data.folds import kfold

    if fold.get("grouped"):
        raise ConfigError(
            f"{run_dir} is a fold of a grouped cross-validation; its groups are not saved, so the fold "
            "cannot be rebuilt: compare the CV groups instead"
        )
    folds = kfold(
        bundle,
        fold["k"],
        seed=fold["seed"],
        stratify=fold.get("stratify", True),
        normalize=fold.get("normalize", "refit"),
    )
    return folds[fold["index"]]


# ----------------------------------------------------------------------------------- two groups
def _group_values(path: Path, metric: str) -> tuple[dict[str, Any], list[str], list[float]]:
    """(group.json, member names, each member's ``metric``) of a finished group."""
    manifest = json.loads((path / "group.json").read_text(encoding="utf-8"))
    summary_file = path / SUMMARY_FILES.get(manifest.get("kind"), "")
    if not summary_file.is_file():
        raise ConfigError(
            f"{path} is an unfinished {manifest.get('kind')} group (no {summary_file.name}); run it again"
        )
    members = json.loads(summary_file.read_text(encoding="utf-8"))["members"]
    missing = [m["run_dir"] for m in members if not isinstance(m["metrics"].get(metric), (int, float))]
    if missing:
        have = sorted(k for k, v in members[0]["metrics"].items() if isinstance(v, (int, float)))
        raise ConfigError(f"{path}: members {missing} have no {metric!r}; they have {have}")
    return manifest, [m["run_dir"] for m in members], [float(m["metrics"][metric]) for m in members]


def _matched(ga: dict[str, Any], gb: dict[str, Any], names_a: list[str], names_b: list[str]) -> bool:
    """Members pair one to one: same kind, same member names, same data and the same folds / seeds."""
    if ga.get("kind") != gb.get("kind") or names_a != names_b:
        return False
    xa, xb = ga.get("arguments") or {}, gb.get("arguments") or {}
    keys = ["data", "data_options"] + (["k", "seed", "stratify", "groups"] if ga.get("kind") == "cv" else ["seeds"])
    return all(xa.get(k) == xb.get(k) for k in keys)


def _compare_groups(a: Path, b: Path, labels: tuple[str, str], metric: str) -> RunsComparison:
    from archlab.runs.stats import summarize

    ga, names_a, va = _group_values(a, metric)
    gb, names_b, vb = _group_values(b, metric)
    paired = _matched(ga, gb, names_a, names_b)
    d = seed_difference(va, vb, paired=paired)
    unit = {"cv": "folds", "seeds": "seeds"}
    how = (
        f"paired t over the same {len(va)} {unit.get(ga.get('kind'), 'members')}"
        if paired
        else f"Welch t over {len(va)} and {len(vb)} members"
    )
    higher = metric_mode(None, metric) == "max"  # no task at hand: judged by the metric's name
    sides = []
    for p, lab, g, v in ((a, labels[0], ga, va), (b, labels[1], gb, vb)):
        s = summarize(v)
        sides.append(RunSide(str(p), lab, str(g.get("kind")), s["mean"], s["std"], s["n"]))
    return RunsComparison(
        sides[0], sides[1], metric, higher, how, d["diff"], d["ci95_low"], d["ci95_high"], d["significant"],
        _verdict(labels, metric, higher, d, how),
    )  # fmt: skip
