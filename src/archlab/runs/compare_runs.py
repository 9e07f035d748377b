"""``archlab compare RUN_A RUN_B``: does A beat B, or is the difference noise?

The test follows the design of the two sides, and the result names it
(:mod:`archlab.runs.stats` holds the tests):

- **Two runs** (run directories) tested on the same samples: both are evaluated on their test
  split, sample by sample. A classification's accuracy gets McNemar's test on the samples one
  model gets right and the other wrong (exact binomial below 25 such samples), with a paired BCa
  bootstrap interval of the accuracy difference; ``test="bootstrap"`` asks for the paired
  bootstrap's own permutation p-value instead. Pairing needs the *same* test samples in the same
  order: each run's data is reloaded from its config.yaml and the test split's contents are
  hashed; different hashes are refused (:class:`archlab.errors.ConfigError`), since an unpaired
  difference of two accuracies on different samples mixes the models' gap with the samples'.
- **Two seed groups** (:mod:`archlab.runs.seeds`) on the same split: a paired t-test, seed s with
  seed s, when both hold the same seeds; Welch's t-test when the seeds differ.
- **Two cross-validation groups** (:mod:`archlab.runs.cv`) with the same folds: the
  Nadeau-Bengio corrected resampled t-test, fold i with fold i, which widens the plain paired t
  for the training samples the folds share; it needs each fold's ``n_test / n_train``, which
  ``cv_summary.json`` records. CV groups with different folds are refused (rerun one with the
  other's k and seed), as are a CV group against a seed group and groups on different data.

Why evaluate at compare time rather than record per-sample results during training: it works
for every run already on disk (and for runs trained before this existed), it keeps the training
engine unchanged, it evaluates exactly the weights the run keeps (its ``best/`` or ``last/``),
and it costs one pass over the test split. The price is that the data must reload as it was
trained on, which config.yaml's data spec provides (a fold run rebuilds its fold).

A winner is named only when p < 0.05; otherwise the result says the difference is not significant.
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
from archlab.report.compare_runs import RENDERERS
from archlab.report.dispatch import register_renderers
from archlab.rundir import RunDir
from archlab.runs.stats import TestResult, corrected_t, mcnemar, paired_bootstrap, paired_t, summarize, welch_t
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
    """The difference ``A - B`` in one test metric: the test the design called for, its interval and p-value.

    Attributes:
        a, b: the two sides.
        metric: the metric compared; ``higher_is_better`` says which way wins.
        design: what was compared (``"same test samples"``, ``"matched seeds"``,
            ``"matched cross-validation folds"``, ``"independent seed groups"``).
        result: the test's outcome: its name (``test``), ``estimate`` (A - B), ``ci95_low`` /
            ``ci95_high`` (``interval`` says how it was obtained), ``p_value`` and ``details``;
            each is also an attribute of the comparison.
        method: one line: test, interval and what they ran over.
        verdict: the sentence the report prints; a winner only when p < 0.05.
    """

    a: RunSide
    b: RunSide
    metric: str
    higher_is_better: bool
    design: str
    result: TestResult
    method: str
    verdict: str
    schema_version: int = 2

    def __getattr__(self, name: str) -> Any:
        # test, estimate, ci95_low, ci95_high, p_value, significant, interval, details: the result's
        if name in _RESULT_FIELDS:
            return getattr(self.result, name)
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """The sides, the design and the result's fields at the top level (JSON output)."""
        out = {k: v for k, v in asdict(self).items() if k != "result"}
        return {**out, **{k: v for k, v in self.result.to_dict().items() if k != "schema_version"}}


_RESULT_FIELDS = ("test", "estimate", "ci95_low", "ci95_high", "p_value", "significant", "interval", "details")

# the report layer, below this one, cannot import the type: it is registered where it is defined
register_renderers(RunsComparison, **RENDERERS)


def _comparison(
    sides: list[RunSide], metric: str, higher: bool, design: str, r: TestResult, how: str
) -> RunsComparison:
    labels = (sides[0].label, sides[1].label)
    method = f"{r.test}, {how}; interval: {r.interval}"
    return RunsComparison(
        sides[0], sides[1], metric, higher, design, r, method, _verdict(labels, metric, higher, r, method)
    )


# ------------------------------------------------------------------------------------- entry
#: what ``test`` may ask for when comparing two runs
RUN_TESTS = ("auto", "mcnemar", "bootstrap")


def group_kind(path: Path) -> str | None:
    """``"cv"`` / ``"seeds"`` when ``path`` is a group parent (has ``group.json``), else None."""
    manifest = path / RunDir.GROUP
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("kind")


def is_run_or_group(target: str | Path) -> bool:
    """Whether ``target`` is a training run directory or a group parent (what this module compares)."""
    path = Path(target)
    return path.is_dir() and (RunDir(path).has_config or (path / RunDir.GROUP).is_file())


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    metric: str | None = None,
    test: str = "auto",
    n_boot: int = 10_000,
    seed: int = 0,
) -> RunsComparison:
    """Compare two runs (over their shared test samples) or two groups (across members), with the fitting test.

    Args:
        run_a, run_b: two run directories, or two CV / seed group parents.
        metric: the test metric (default ``test_accuracy``; for runs it must be that, the one
            metric with a per-sample form here).
        test: two runs only: ``"auto"`` / ``"mcnemar"`` (McNemar's test) or ``"bootstrap"``
            (paired BCa bootstrap with a permutation p-value).
        n_boot, seed: bootstrap resamples and generator seed (runs only).

    Raises:
        ConfigError: not runs or groups, a run and a group mixed, different test splits or data,
            CV groups with different folds, a group not finished, a metric the runs or members
            do not have, fold sizes not recorded.
    """
    if test not in RUN_TESTS:
        raise ConfigError(f"test must be one of {', '.join(RUN_TESTS)}; got {test!r}")
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
        return _compare_two_runs(a, b, labels, metric or "test_accuracy", test, n_boot, seed)
    if test != "auto":
        raise ConfigError(f"test={test!r} chooses the test of two runs; a group comparison's follows its design")
    return _compare_groups(a, b, labels, metric or "test_accuracy")


def _labels(a: Path, b: Path) -> tuple[str, str]:
    """Directory names, or parent/name when the names alone are the same (``seed-0`` and ``seed-0``)."""
    if a.resolve() == b.resolve():
        raise ConfigError(f"compare needs two different runs; got {a} twice")
    if a.name != b.name:
        return a.name, b.name
    return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"


def _verdict(labels: tuple[str, str], metric: str, higher: bool, r: TestResult, how: str) -> str:
    interval = f"{r.estimate:+.4g} [95% CI {r.ci95_low:+.4g}, {r.ci95_high:+.4g}], p = {r.p_value:.3g}"
    if not r.significant:
        return f"not significant: {metric} A - B = {interval} ({how}); neither run is shown to be better"
    a_better = (r.estimate > 0) == higher
    winner, loser = labels if a_better else labels[::-1]
    return f"{winner} beats {loser}: {metric} A - B = {interval} < 0.05 ({how})"


# ------------------------------------------------------------------------------------ two runs
def _compare_two_runs(a: Path, b: Path, labels: tuple[str, str], metric: str, test: str, n_boot: int, seed: int):
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
    if test == "bootstrap":
        r = paired_bootstrap(ca, cb, n_boot=n_boot, seed=seed)
    else:
        r = mcnemar(ca, cb, n_boot=n_boot, seed=seed)
    sides = [
        RunSide(str(p), lab, "run", float(c.mean()), None, len(c), _recorded(p, metric))
        for p, lab, c in ((a, labels[0], ca), (b, labels[1], cb))
    ]
    return _comparison(sides, metric, True, "same test samples", r, f"over the same {len(ca)} test samples")


def _recorded(path: Path, metric: str) -> float | None:
    final = RunDir(path).final_metrics_path
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

    if fold.get("splitter") != "sklearn":
        raise ConfigError(
            f"{run_dir} is a fold of a cross-validation made before folds came from scikit-learn's splitters; "
            "it cannot be rebuilt exactly: rerun the cross-validation or compare the CV groups instead"
        )
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
        split=fold.get("split", "shuffled"),
    )
    return folds[fold["index"]]


# ----------------------------------------------------------------------------------- two groups
def _group_values(path: Path, metric: str) -> tuple[dict[str, Any], list[str], list[float]]:
    """(group.json, member names, each member's ``metric``) of a finished group."""
    manifest = json.loads((path / RunDir.GROUP).read_text(encoding="utf-8"))
    summary_file = path / RunDir.SUMMARIES.get(manifest.get("kind"), "")
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
    keys = ["data", "data_options"] + (
        ["k", "seed", "stratify", "groups", "split", "splitter"] if ga.get("kind") == "cv" else ["seeds"]
    )
    return all(xa.get(k) == xb.get(k) for k in keys)


def _same_data(a: Path, ga: dict[str, Any], b: Path, gb: dict[str, Any]) -> None:
    """Refuse what no test here fits: a CV group against a seed group, or groups on different data."""
    if ga.get("kind") != gb.get("kind"):
        raise ConfigError(
            f"compare two cross-validations or two seed groups; got {a} ({ga.get('kind')}) and {b} ({gb.get('kind')})"
        )
    xa, xb = ga.get("arguments") or {}, gb.get("arguments") or {}
    for key in ("data", "data_options"):
        if xa.get(key) != xb.get(key):
            raise ConfigError(
                f"the groups were tested on different data ({key} {xa.get(key)!r} in {a}, {xb.get(key)!r} in {b}); "
                "train both on the same data to compare them"
            )


def _fold_ratio(path: Path, metric: str) -> float:
    """``n_test / n_train`` of the folds for ``metric``, from ``cv_summary.json``'s fold sizes."""
    from archlab.runs.cv import fold_test_train_ratios

    saved = json.loads((path / RunDir.CV_SUMMARY).read_text(encoding="utf-8"))
    sizes = saved.get("fold_sizes")
    if not sizes:
        raise ConfigError(
            f"{path}/{RunDir.CV_SUMMARY} records no fold sizes, which the corrected t-test needs (a group made "
            "before they were recorded); rerun that cross-validation to compare it"
        )
    ratio = fold_test_train_ratios(sizes, {metric: 0}).get(metric)
    if ratio is None:
        raise ConfigError(f"{metric!r} is not measured on a fold's val or test part; compare a val_* or test_* metric")
    return ratio


def _compare_groups(a: Path, b: Path, labels: tuple[str, str], metric: str) -> RunsComparison:
    ga, names_a, va = _group_values(a, metric)
    gb, names_b, vb = _group_values(b, metric)
    _same_data(a, ga, b, gb)
    kind = ga.get("kind")
    if _matched(ga, gb, names_a, names_b):
        if kind == "cv":
            r = corrected_t(va, vb, test_train_ratio=_fold_ratio(a, metric))
            design, how = "matched cross-validation folds", f"over the same {len(va)} folds"
        else:
            r = paired_t(va, vb)
            design, how = "matched seeds", f"over the same {len(va)} seeds"
    elif kind == "cv":
        xa, xb = ga.get("arguments") or {}, gb.get("arguments") or {}
        raise ConfigError(
            f"cross-validations compare fold by fold, so they need the same folds; {a} has "
            f"{ {k: xa.get(k) for k in ('k', 'seed', 'split')} } and {b} "
            f"{ {k: xb.get(k) for k in ('k', 'seed', 'split')} }: rerun one with the other's --cv K and seed"
        )
    else:
        r = welch_t(va, vb)
        design, how = "independent seed groups", f"over {len(va)} and {len(vb)} seeds"
    higher = metric_mode(None, metric) == "max"  # no task at hand: judged by the metric's name
    sides = []
    for p, lab, g, v in ((a, labels[0], ga, va), (b, labels[1], gb, vb)):
        s = summarize(v)
        sides.append(RunSide(str(p), lab, str(g.get("kind")), s["mean"], s["std"], s["n"]))
    return _comparison(sides, metric, higher, design, r, how)
