"""Small data: test accuracy with the old rule (best checkpoint on a tiny val split) and the new default.

The claim: below :data:`archlab.train.small_data.MIN_VAL_FOR_SELECTION` validation
samples, keeping the last weights is no worse on average than picking the "best" checkpoint on
the validation split, and its spread over seeds is smaller on the smallest sets.

Rows: GunPoint with the recipe of ``examples/gunpoint_fcn.yaml`` (FCN of Wang et al. 2017, 50
training series -> 45 train / 5 val), and the bundled tabular sets wine, iris, breast_cancer with
``mlp_tabular``. Each row is run with N seeds; seed ``s`` sets both the data split
(``load(name, seed=s)``, which moves the val carve-out and, for tabular sets, the test split)
and the training seed, so the spread includes the split's. The two rules see identical data and
seeds, so they are compared with the tests for those designs (``archlab.runs.stats``, from scipy):

- over seeds: a paired t-test of the per-seed accuracies (``paired_t``);
- over test samples: within a seed both runs see the same test samples, so each seed's pair of
  runs gets McNemar's test (``archlab compare``), and the seeds' 2x2 tables are summed into one
  pooled McNemar test (``mcnemar``), which uses every test sample rather than one mean per seed.

- old: ``restore_best=True`` (the best checkpoint on val_loss), the behaviour before the small-validation rule.
- new: what :func:`archlab.train.small_data.selection_policy` decides for the run's val size:
  below the threshold, the last weights; at or above it, the same as old.

Usage::

    python benchmarks/bench_small_data.py                       # 5 seeds, full recipes
    python benchmarks/bench_small_data.py --seeds 3 --epoch-scale 0.3 iris wine   # quicker, a subset
    python benchmarks/bench_small_data.py --out small_data_bounded --epoch-scale 0.5 iris wine
    python benchmarks/bench_small_data.py --restat   # no training: the saved rows' statistics again

Writes ``benchmarks/results/<out>.md`` (and ``<out>.json``; ``--out`` defaults to ``small_data``);
a subset run replaces its rows and keeps the others. Each row records the command options it ran
with. ``--restat`` recomputes the seed-level statistics of the saved per-seed accuracies with the
current :mod:`archlab.runs.stats`; the per-sample McNemar needs the runs, so it is filled in only
where the accuracies fix every sample (the same run twice, or 100% on both sides).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "bench_small_data"


def recipes() -> dict[str, dict[str, Any]]:
    """Per row: model name, model overrides, data name, train config."""
    doc = yaml.safe_load((ROOT / "examples" / "gunpoint_fcn.yaml").read_text())
    model = dict(doc["model"])
    gun_name = model.pop("name")
    tabular_train = {"epochs": 100, "batch_size": 32, "lr": 1e-3}
    return {
        "gunpoint": {"model": gun_name, "overrides": model, "data": doc["data"]["name"], "train": dict(doc["train"])},
        "wine": {"model": "mlp_tabular", "overrides": {}, "data": "wine", "train": dict(tabular_train)},
        "iris": {"model": "mlp_tabular", "overrides": {}, "data": "iris", "train": dict(tabular_train)},
        "breast_cancer": {
            "model": "mlp_tabular",
            "overrides": {},
            "data": "breast_cancer",
            "train": dict(tabular_train),
        },
    }


def run_row(name: str, recipe: dict[str, Any], seeds: list[int], epoch_scale: float) -> dict[str, Any]:
    from archlab.data import load
    from archlab.runs import fit
    from archlab.runs.compare_runs import compare_runs
    from archlab.runs.stats import seed_difference, summarize
    from archlab.train import TrainConfig
    from archlab.train.small_data import selection_policy

    # Periodic last/ checkpoints do not change what is learned; skipping them keeps the rows fast.
    train = {**recipe["train"], "checkpoint_every": 1_000_000}
    if epoch_scale != 1.0 and train.get("epochs"):
        train["epochs"] = max(1, round(train["epochs"] * epoch_scale))
    acc: dict[str, list[float]] = {"old": [], "new": []}
    tables: list[dict[str, int]] = []  # per seed, new (A) vs old (B) on the same test samples
    per_seed_p: list[float] = []
    policy = None
    t0 = time.perf_counter()
    for s in seeds:
        bundle = load(recipe["data"], seed=s)
        n_val = 0 if bundle.val is None else len(bundle.val)
        policy = selection_policy(n_val, TrainConfig.build({**train, "seed": s}))
        rules = {"old": {"restore_best": True}, "new": dict(policy.overrides)}
        configs = {rule: TrainConfig.build({**train, **o, "seed": s}).to_dict() for rule, o in rules.items()}
        dirs = {}
        for rule, overrides in rules.items():
            if rule == "new" and configs["new"] == configs["old"]:  # val >= threshold: the same run again
                acc["new"].append(acc["old"][-1])
                continue
            result = fit(
                recipe["model"],
                load(recipe["data"], seed=s),
                model_overrides=recipe["overrides"] or None,
                data_spec={"name": recipe["data"], "options": {"seed": s}},
                out_dir=RUNS / name / rule / f"seed-{s}",
                **{**train, **overrides, "seed": s},
            )
            acc[rule].append(float(result.metrics["test_accuracy"]))
            dirs[rule] = result.run_dir
            logging.info(
                "%s seed %d %s: test_accuracy %.4f (weights: %s)",
                name,
                s,
                rule,
                result.metrics["test_accuracy"],
                result.metrics.get("weights"),
            )
        if "new" in dirs:
            c = compare_runs(dirs["new"], dirs["old"], n_boot=2000, seed=s)
            tables.append({k: c.details[k] for k in _TABLE})
            per_seed_p.append(c.p_value)
        else:  # the same run twice: every sample agrees
            right = round(acc["old"][-1] * len(bundle.test))
            tables.append({"both_right": right, "a_right_b_wrong": 0, "a_wrong_b_right": 0,
                           "both_wrong": len(bundle.test) - right})  # fmt: skip
            per_seed_p.append(1.0)
    return {
        "row": name,
        "model": recipe["model"],
        "data": recipe["data"],
        "epochs": train.get("epochs"),
        "n_train": len(bundle.train),
        "n_val": n_val,
        "n_test": len(bundle.test) if bundle.test else 0,
        "new_rule": policy.reason,
        "select_on_val_new": policy.select_on_val,
        "old": summarize(acc["old"]),
        "new": summarize(acc["new"]),
        "old_values": acc["old"],
        "new_values": acc["new"],
        "new_minus_old": seed_difference(acc["new"], acc["old"], paired=True) if len(seeds) > 1 else None,
        "mcnemar_tables": tables,
        "mcnemar_per_seed_p": per_seed_p,
        "mcnemar_pooled": pooled_mcnemar(tables),
        "seeds": seeds,
        "time_s": round(time.perf_counter() - t0, 1),
        "epoch_scale": epoch_scale,
    }


_TABLE = ("both_right", "a_right_b_wrong", "a_wrong_b_right", "both_wrong")


def pooled_mcnemar(tables: list[dict[str, int]]) -> dict[str, Any]:
    """McNemar's test (new vs old) on the seeds' summed 2x2 tables of per-sample correctness."""
    import numpy as np

    from archlab.runs.stats import mcnemar

    total = {k: sum(t[k] for t in tables) for k in _TABLE}
    a = np.repeat([1.0, 1.0, 0.0, 0.0], [total[k] for k in _TABLE])
    b = np.repeat([1.0, 0.0, 1.0, 0.0], [total[k] for k in _TABLE])
    return mcnemar(a, b, n_boot=2000).to_dict()


def restat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The saved rows with their seed-level statistics recomputed by the current archlab.runs.stats."""
    from archlab.runs.stats import seed_difference, summarize

    for r in rows:
        r["old"], r["new"] = summarize(r["old_values"]), summarize(r["new_values"])
        before = r.get("new_minus_old")
        r["new_minus_old"] = (
            seed_difference(r["new_values"], r["old_values"], paired=True) if len(r["seeds"]) > 1 else None
        )
        if before is not None and "p_value" not in before:  # saved by the hand-written t table
            r["new_minus_old_before"] = before
        if "mcnemar_tables" not in r and _agreement_known(r):
            right = [round(v * r["n_test"]) for v in r["old_values"]]
            r["mcnemar_tables"] = [
                {"both_right": k, "a_right_b_wrong": 0, "a_wrong_b_right": 0, "both_wrong": r["n_test"] - k}
                for k in right
            ]
            r["mcnemar_per_seed_p"] = [1.0] * len(right)
            r["mcnemar_pooled"] = pooled_mcnemar(r["mcnemar_tables"])
    return rows


def _agreement_known(r: dict[str, Any]) -> bool:
    """Whether the saved accuracies alone fix every sample's pair: the same run twice, or both right on all."""
    return bool(r["select_on_val_new"]) or all(a == b == 1.0 for a, b in zip(r["old_values"], r["new_values"]))


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 0.001 else "<0.001"


def table(rows: list[dict[str, Any]], argv: list[str]) -> str:
    def ms(s: dict[str, Any]) -> str:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"

    lines = [
        "# Small data: best-on-tiny-val (old) vs the small-validation rule (new default)",
        "",
        f"Last command: `python benchmarks/bench_small_data.py {' '.join(argv)}`".rstrip(),
        "",
        _environment(),
        "",
        "Test accuracy in %, mean ± sample std over seeds (seed = data split and training seed); "
        "'epochs' is what each row ran (the recipe's, times --epoch-scale). "
        "new − old: paired t-test over the seeds (scipy `ttest_rel`), mean difference with its 95% interval "
        "and p. Pooled McNemar: the seeds' per-sample 2x2 tables summed (new right / old wrong : the reverse), "
        "McNemar's test on them; 'per seed' counts seeds whose own McNemar p < 0.05. "
        "'significant' is p < 0.05 of the paired t (seed level) / the pooled McNemar (sample level).",
        "",
        "| row | model | epochs | seeds | train / val / test | new rule | old: best on val | new default "
        "| new − old [95% CI] | p (paired t) | pooled McNemar | per seed | significant | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["new_minus_old"]
        diff = (
            "n/a (1 seed)"
            if d is None
            else f"{100 * d['diff']:+.1f} [{100 * d['ci95_low']:+.1f}, {100 * d['ci95_high']:+.1f}]"
        )
        m = r.get("mcnemar_pooled")
        pooled = (
            "not recorded"
            if m is None
            else f"{m['details']['a_right_b_wrong']} : {m['details']['a_wrong_b_right']}, p = {_p(m['p_value'])}"
        )
        per_seed = (
            "-"
            if "mcnemar_per_seed_p" not in r
            else f"{sum(p < 0.05 for p in r['mcnemar_per_seed_p'])}/{len(r['seeds'])}"
        )
        verdict = "" if d is None else ("yes" if d["significant"] else "no")
        if m is not None:
            verdict += " / " + ("yes" if m["significant"] else "no")
        lines.append(
            f"| {r['row']} | {r['model']} | {r['epochs']} | {len(r['seeds'])} | {r['n_train']} / {r['n_val']} / {r['n_test']} | "
            f"{'best on val' if r['select_on_val_new'] else 'last weights'} | {ms(r['old'])} | {ms(r['new'])} | "
            f"{diff} | {'' if d is None else _p(d['p_value'])} | {pooled} | {per_seed} | {verdict} | {r['time_s']:.0f} s |"
        )
    lines += ["", "Rows where val has >= 50 samples run the same rule twice (new = old) and show seed noise only."]
    before = [r for r in rows if r.get("new_minus_old_before")]
    if before:
        lines += ["", "Seed-level verdicts before and after the statistics moved to scipy (same saved accuracies):", ""]
        for r in before:
            b, d = r["new_minus_old_before"], r["new_minus_old"]
            lines.append(
                f"- {r['row']}: before [{100 * b['ci95_low']:+.2f}, {100 * b['ci95_high']:+.2f}] "
                f"{'significant' if b['significant'] else 'not significant'}; now "
                f"[{100 * d['ci95_low']:+.2f}, {100 * d['ci95_high']:+.2f}], p = {_p(d['p_value'])}, "
                f"{'significant' if d['significant'] else 'not significant'}"
            )
    return "\n".join(lines) + "\n"


def _environment() -> str:
    import os
    import re

    import torch

    flags = sorted(set(re.findall(r"avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2", Path("/proc/cpuinfo").read_text())))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"torch {torch.__version__}; CPU flags: {' '.join(flags) or 'none found'}; load average at the end: {load}."


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", help="rows to run (default all): " + ", ".join(recipes()))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every recipe's epochs (quick runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    parser.add_argument("--out", default="small_data", help="results file name under benchmarks/results (no suffix)")
    parser.add_argument("--restat", action="store_true", help="no training: recompute the saved rows' statistics")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    all_recipes = recipes()
    unknown = [r for r in args.rows if r not in all_recipes]
    if unknown:
        parser.error(f"unknown rows {unknown}; have {sorted(all_recipes)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / f"{args.out}.json"
    if args.restat:
        if not saved.is_file():
            parser.error(f"--restat needs {saved}; run the benchmark first")
        rows = restat(json.loads(saved.read_text()))
    else:
        rows = [
            run_row(name, all_recipes[name], list(range(args.seeds)), args.epoch_scale)
            for name in (args.rows or all_recipes)
        ]
        if args.rows and saved.is_file():  # a subset run replaces its rows and keeps the others
            fresh = {r["row"] for r in rows}
            rows = [r for r in json.loads(saved.read_text()) if r["row"] not in fresh] + rows
    (RESULTS / f"{args.out}.md").write_text(table(rows, argv))
    saved.write_text(json.dumps(rows, indent=2))
    sys.stdout.write(table(rows, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
