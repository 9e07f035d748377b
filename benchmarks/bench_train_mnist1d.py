"""MNIST-1D with the paper's recipe: archlab's trainer vs a plain PyTorch loop, side by side.

Recipe (Greydanus 2020): Adam lr 1e-2, batch 100, 6,000 steps, in-order batches over the 4,000
training series, fp32; test accuracy on the fixed 1,000 test series. Both loops train the same
registry model (``cnn1d_mnist1d``) from the same initial weights; runs alternate (plain, archlab,
plain, archlab, ...) so load on the machine hits both alike. Time per step counts the training
loop only (archlab's includes its logging and its checkpoints every --checkpoint-every steps).

    python benchmarks/bench_train_mnist1d.py            # writes benchmarks/results/train_mnist1d.md

A second table does the same for a small transformer (issue 14): nanoGPT's CPU baby GPT
(``gpt_nano`` with 4 layers, 4 heads, 128 wide, block 64, no dropout) on the first 300,000
characters of Shakespeare (in memory, stride 16), AdamW betas (0.9, 0.99), weight decay 0.1 on
matrices, clip 1, constant lr 1e-3, batch 12, in-order batches (``--gpt-steps``, 0 to skip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import archlab
from archlab.data import load
from archlab.data.base import DataBundle, Split
from archlab.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "train_mnist1d.md"


def paper_bundle() -> DataBundle:
    b = load("mnist1d")
    x = torch.cat([b.train.inputs[0], b.val.inputs[0]])  # all 4,000 training series, as in the paper
    y = torch.cat([b.train.target, b.val.target])
    return DataBundle("mnist1d", b.modality, b.task, Split((x,), y), None, b.test, info=b.info)


def plain_loop(model, x, y, steps: int, bs: int, lr: float) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        i = (step * bs) % len(x)
        loss = F.cross_entropy(model(x[i : i + bs]), y[i : i + bs])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, time.process_time() - c0


@torch.no_grad()
def accuracy(model, split: Split) -> float:
    model.eval()
    return float((model(*split.inputs).argmax(-1) == split.target).float().mean())


def plain_gpt_loop(model, x, y, steps: int, bs: int, lr: float) -> tuple[float, float]:
    """nanoGPT's step on archlab's model: AdamW with decay on matrices only, clip 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        i = (step * bs) % (len(x) - bs)
        logits = model(x[i : i + bs])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y[i : i + bs].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, time.process_time() - c0


def gpt_rows(steps: int, repeats: int, tmp: str) -> list[str]:
    """The transformer table: plain loop vs archlab.fit on gpt_nano (4x128), alternating."""
    data = load("shakespeare", block_size=64, stride=16, max_chars=300_000, val_fraction=0.1, test_fraction=0.0)
    x, y = data.train.inputs[0], data.train.target
    shape = dict(vocab_size=data.info["vocab_size"], d_model=128, n_heads=4, n_layers=4, max_seq_len=64, dropout=0.0)
    rows, ratios = [], []
    for rep in range(repeats):
        torch.manual_seed(rep)
        model = archlab.create("gpt_nano", **shape)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        t, _ = plain_gpt_loop(model, x, y, steps, 12, 1e-3)
        model.load_state_dict(init)
        r = archlab.fit(
            model,
            data,
            "language_modeling",
            max_steps=steps,
            batch_size=12,
            lr=1e-3,
            betas=(0.9, 0.99),
            weight_decay=0.1,
            grad_clip=1.0,
            schedule="constant",
            shuffle=False,
            precision="fp32",
            eval_every=10**9,  # the final evaluation only; not in the per-step comparison below
            log_every=100,
            seed=rep,
            out_dir=tmp,
            run_name=f"gpt{rep}",
        )
        # ms/step from the trainer's own train records (every 100 steps, logged before any
        # evaluation), so the final evaluation is not counted; the plain loop has none.
        recs = [json.loads(line) for line in (Path(r.run_dir) / "metrics.jsonl").read_text().splitlines()]
        a_t = statistics.mean(12 * 1e3 / rec["samples_per_s"] for rec in recs if rec.get("kind") == "train")
        p_t = t / steps * 1e3
        ratios.append(a_t / p_t)
        rows.append(f"| {rep} | {p_t:.1f} | {a_t:.1f} | {a_t / p_t:.3f} |")
        print(rows[-1], flush=True)
    return [
        "",
        "## A small transformer: nanoGPT's baby GPT (gpt_nano 4x128, block 64)",
        "",
        f"{steps} steps, batch 12, first 300,000 characters of Shakespeare in memory (stride 16), AdamW "
        "betas (0.9, 0.99), weight decay 0.1 on matrices, clip 1, constant lr 1e-3, in-order batches, fp32. "
        "archlab's time per step is from its own train records (its final evaluation left out).",
        "",
        "| repeat | plain wall ms/step | archlab wall ms/step | wall ratio |",
        "|---:|---:|---:|---:|",
        *rows,
        "",
        f"Wall ratio, median: **{statistics.median(ratios):.3f}**.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn1d_mnist1d")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--gpt-steps", type=int, default=300, help="steps of the transformer table (0: skip it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = paper_bundle()
    x, y = data.train.inputs[0], data.train.target
    rows, plain_t, arch_t, plain_acc, arch_acc, plain_c, arch_c = [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            torch.manual_seed(rep)
            model = archlab.create(args.model)
            init = {k: v.clone() for k, v in model.state_dict().items()}
            t, c = plain_loop(model, x, y, args.steps, 100, 1e-2)
            plain_t.append(t / args.steps * 1e3)
            plain_c.append(c / args.steps * 1e3)
            plain_acc.append(accuracy(model, data.test))

            model.load_state_dict(init)
            r = archlab.fit(
                model,
                data,
                "classification",
                max_steps=args.steps,
                batch_size=100,
                lr=1e-2,
                optimizer="adam",
                weight_decay=0.0,
                schedule="constant",
                shuffle=False,
                precision="fp32",
                checkpoint_every=args.checkpoint_every,
                log_every=100,
                seed=rep,
                out_dir=tmp,
                run_name=f"rep{rep}",
            )
            arch_t.append(r.metrics["train_time_s"] / args.steps * 1e3)
            arch_c.append(r.metrics["train_cpu_s"] / args.steps * 1e3)
            arch_acc.append(r.metrics["test_accuracy"])
            rows.append(
                (
                    rep,
                    plain_t[-1],
                    arch_t[-1],
                    arch_t[-1] / plain_t[-1],
                    plain_c[-1],
                    arch_c[-1],
                    arch_c[-1] / plain_c[-1],
                    plain_acc[-1],
                    arch_acc[-1],
                )
            )
            print(
                f"rep {rep}: plain {plain_t[-1]:.2f} ms/step (cpu {plain_c[-1]:.2f}) acc {plain_acc[-1]:.4f} | "
                f"archlab {arch_t[-1]:.2f} ms/step (cpu {arch_c[-1]:.2f}) acc {arch_acc[-1]:.4f}",
                flush=True,
            )
    med_ratio = statistics.median(arch_t) / statistics.median(plain_t)
    best_ratio = min(arch_t) / min(plain_t)
    cpu_ratio = statistics.median(a / p for a, p in zip(arch_c, plain_c))  # paired: same repeat, same load
    lines = [
        "# MNIST-1D, paper recipe: archlab trainer vs a plain PyTorch loop",
        "",
        f"Command: `python benchmarks/bench_train_mnist1d.py` (model `{args.model}`, {args.steps} steps, "
        f"Adam lr 1e-2, batch 100, in-order batches, fp32, {args.threads} thread(s); archlab checkpoints "
        f"every {args.checkpoint_every} steps and logs every 100). Machine: shared 2-core CPU.",
        "",
        "| repeat | plain wall ms/step | archlab wall ms/step | wall ratio | plain CPU ms/step | archlab CPU ms/step "
        "| CPU ratio | plain test acc | archlab test acc |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.3f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.3f} | {r[7]:.4f} "
            f"| {r[8]:.4f} |"
            for r in rows
        ],
        "",
        f"CPU time per step (process time, one thread: robust to other load on the machine), median of the "
        f"per-repeat ratios: "
        f"**{cpu_ratio:.3f}** (target <= 1.05). Wall time, ratio of medians: {med_ratio:.3f}; of best times: "
        f"{best_ratio:.3f}. "
        f"Test accuracy (archlab): median **{statistics.median(arch_acc):.4f}** (paper's CNN: 0.94).",
        "",
    ]
    if args.gpt_steps:
        with tempfile.TemporaryDirectory() as tmp:
            lines += gpt_rows(args.gpt_steps, args.repeats, tmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
