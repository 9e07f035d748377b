"""Small data: test accuracy with the old rule (best checkpoint on a tiny val split) and the new default.

The claim (issue 17): below :data:`archlab.train.small_data.MIN_VAL_FOR_SELECTION` validation
samples, keeping the last weights is no worse on average than picking the "best" checkpoint on
the validation split, and its spread over seeds is smaller on the smallest sets.

Rows: GunPoint with the recipe of ``examples/gunpoint_fcn.yaml`` (FCN of Wang et al. 2017, 50
training series -> 45 train / 5 val), and the bundled tabular sets wine, iris, breast_cancer with
``mlp_tabular``. Each row is run with N seeds; seed ``s`` sets both the data split
(``load(name, seed=s)``, which moves the val carve-out and, for tabular sets, the test split)
and the training seed, so the spread includes the split's. The two rules see identical data and
seeds, so their difference is paired (``archlab.runs.stats.seed_difference(paired=True)``).

- old: ``restore_best=True`` (the best checkpoint on val_loss), the behaviour before issue 17.
- new: what :func:`archlab.train.small_data.selection_policy` decides for the run's val size:
  below the threshold, the last weights; at or above it, the same as old.

Usage::

    python benchmarks/bench_small_data.py                       # 5 seeds, full recipes
    python benchmarks/bench_small_data.py --seeds 3 --epoch-scale 0.3 iris wine   # quicker, a subset

Writes ``benchmarks/results/small_data.md`` (and ``small_data.json``); a subset run replaces its
rows and keeps the others. Each row records the command options it ran with.
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
    from archlab.runs.stats import seed_difference, summarize
    from archlab.train import TrainConfig
    from archlab.train.small_data import selection_policy

    # Periodic last/ checkpoints do not change what is learned; skipping them keeps the rows fast.
    train = {**recipe["train"], "checkpoint_every": 1_000_000}
    if epoch_scale != 1.0 and train.get("epochs"):
        train["epochs"] = max(1, round(train["epochs"] * epoch_scale))
    acc: dict[str, list[float]] = {"old": [], "new": []}
    policy = None
    t0 = time.perf_counter()
    for s in seeds:
        bundle = load(recipe["data"], seed=s)
        n_val = 0 if bundle.val is None else len(bundle.val)
        policy = selection_policy(n_val, TrainConfig.build({**train, "seed": s}))
        rules = {"old": {"restore_best": True}, "new": dict(policy.overrides)}
        configs = {rule: TrainConfig.build({**train, **o, "seed": s}).to_dict() for rule, o in rules.items()}
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
            logging.info(
                "%s seed %d %s: test_accuracy %.4f (weights: %s)",
                name,
                s,
                rule,
                result.metrics["test_accuracy"],
                result.metrics.get("weights"),
            )
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
        "seeds": seeds,
        "time_s": round(time.perf_counter() - t0, 1),
        "epoch_scale": epoch_scale,
    }


def table(rows: list[dict[str, Any]], argv: list[str]) -> str:
    def ms(s: dict[str, Any]) -> str:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"

    lines = [
        "# Small data: best-on-tiny-val (old) vs the small-validation rule (new default)",
        "",
        f"Last command: `python benchmarks/bench_small_data.py {' '.join(argv)}`".rstrip(),
        "",
        "Test accuracy in %, mean ± sample std over seeds (seed = data split and training seed); "
        "'epochs' is what each row ran (the recipe's, times --epoch-scale). "
        "new − old: paired mean difference with its 95% t-interval; 'yes' only when the interval excludes 0.",
        "",
        "| row | model | epochs | seeds | train / val / test | new rule | old: best on val | new default | new − old [95% CI] | significant | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["new_minus_old"]
        diff = (
            "n/a (1 seed)"
            if d is None
            else f"{100 * d['diff']:+.1f} [{100 * d['ci95_low']:+.1f}, {100 * d['ci95_high']:+.1f}]"
        )
        lines.append(
            f"| {r['row']} | {r['model']} | {r['epochs']} | {len(r['seeds'])} | {r['n_train']} / {r['n_val']} / {r['n_test']} | "
            f"{'best on val' if r['select_on_val_new'] else 'last weights'} | {ms(r['old'])} | {ms(r['new'])} | "
            f"{diff} | {'' if d is None else ('yes' if d['significant'] else 'no')} | {r['time_s']:.0f} s |"
        )
    lines += ["", "Rows where val has >= 50 samples run the same rule twice (new = old) and show seed noise only."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", help="rows to run (default all): " + ", ".join(recipes()))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="multiply every recipe's epochs (quick runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    all_recipes = recipes()
    unknown = [r for r in args.rows if r not in all_recipes]
    if unknown:
        parser.error(f"unknown rows {unknown}; have {sorted(all_recipes)}")
    rows = [
        run_row(name, all_recipes[name], list(range(args.seeds)), args.epoch_scale)
        for name in (args.rows or all_recipes)
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "small_data.json"
    if args.rows and saved.is_file():  # a subset run replaces its rows and keeps the others
        fresh = {r["row"] for r in rows}
        rows = [r for r in json.loads(saved.read_text()) if r["row"] not in fresh] + rows
    (RESULTS / "small_data.md").write_text(table(rows, argv))
    (RESULTS / "small_data.json").write_text(json.dumps(rows, indent=2))
    sys.stdout.write(table(rows, argv))


if __name__ == "__main__":
    main(sys.argv[1:])
