"""Augmentation: the digits CNN of ``examples/digits_cnn.yaml`` with and without mixup / CutMix.

The claim measured (issue 13, seed 001: "use augmentations (mixup, CutMix)"): the test
accuracy, macro-F1 and loss of the example's recipe, unchanged but for ``train.augment``, over
N seeds. Seed ``s`` sets the training seed and the model's initialisation; the data split is the
example's (``digits``, seed 0) in every run, so the spread is the training's. Each augmented row
is compared with the plain one by a paired t-interval over the seeds
(:func:`archlab.runs.stats.seed_difference`).

Rows: none; mixup (alpha 0.2); CutMix (alpha 1.0); mixup + CutMix (one of the two per batch).
Horizontal flips stay off (they change digits' meaning) and crops are not used: on 8x8 images a
shift of one pixel is an eighth of the image.

Usage::

    python benchmarks/bench_augment.py                 # 3 seeds, the example's 40 epochs
    python benchmarks/bench_augment.py --seeds 2 --epochs 5 --rows none mixup   # quicker

Writes ``benchmarks/results/augment.md`` (and ``augment.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import archlab
import archlab.data
from archlab.runs.stats import seed_difference, summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "bench_augment"

ROWS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "mixup": {"mixup_alpha": 0.2},
    "cutmix": {"cutmix_alpha": 1.0},
    "mixup+cutmix": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0},
}
METRICS = ("test_accuracy", "test_f1", "test_loss")


def run_row(name: str, seeds: list[int], epochs: int | None) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "digits_cnn.yaml").read_text())
    train = dict(doc["train"])
    if epochs is not None:
        train["epochs"] = epochs
    if ROWS[name] is not None:
        train["augment"] = ROWS[name]
    data = archlab.data.load(doc["data"]["name"], **{k: v for k, v in doc["data"].items() if k != "name"})
    per_seed = []
    for seed in seeds:
        t0 = time.perf_counter()
        result = archlab.fit(
            doc["model"], data, task=doc["task"], out_dir=RUNS, run_name=f"{name}-s{seed}", seed=seed, **train
        )
        m = result.metrics
        per_seed.append({"seed": seed, **{k: m[k] for k in METRICS}, "wall_s": time.perf_counter() - t0})
        logging.info("%s seed %d: %s", name, seed, {k: round(m[k], 4) for k in METRICS})
    return {"row": name, "augment": ROWS[name], "train": train, "runs": per_seed}


def write_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    base = next((r for r in rows if r["row"] == "none"), None)
    lines = [
        "# Augmentation on the digits CNN",
        "",
        f"`python benchmarks/bench_augment.py --seeds {args.seeds}"
        + (f" --epochs {args.epochs}" if args.epochs else "")
        + "` on the CPU "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads). Recipe: `examples/digits_cnn.yaml` "
        f"(cnn_digits, digits split seed 0, {rows[0]['train'].get('epochs')} epochs, label smoothing 0.05), "
        "changed only by `train.augment`. Mean ± sample std over the seeds; Δ acc is the paired "
        "difference from `none` with its 95% t-interval. Wall time is per run on a shared 2-core machine "
        "(other jobs running): a cost indication, not a speed measurement.",
        "",
        "| augment | test accuracy | test macro-F1 | test loss | Δ acc vs none (95% CI) | wall s / run |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = []
        for k in METRICS:
            s = summarize([run[k] for run in r["runs"]])
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}")
        delta = "-"
        if base is not None and r is not base and len(r["runs"]) >= 2:
            d = seed_difference(
                [x["test_accuracy"] for x in r["runs"]], [x["test_accuracy"] for x in base["runs"]], paired=True
            )
            delta = f"{d['diff']:+.4f} ({d['ci95_low']:+.4f}, {d['ci95_high']:+.4f})"
        wall = sum(x["wall_s"] for x in r["runs"]) / len(r["runs"])
        label = r["row"] if r["augment"] is None else f"{r['row']} `{json.dumps(r['augment'])}`"
        lines.append(f"| {label} | {' | '.join(cells)} | {delta} | {wall:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override the example's epochs (quick runs)")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    rows = [run_row(name, list(range(args.seeds)), args.epochs) for name in args.rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "augment.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = write_table(rows, args)
    (RESULTS / "augment.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
