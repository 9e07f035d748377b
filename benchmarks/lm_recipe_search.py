"""Search char-LM training recipes at equal wall-clock time (standalone: torch + numpy only).

Trains a compact decoder-only GPT (token + position embedding, pre-LN blocks with
``F.scaled_dot_product_attention(is_causal=True)``, GELU MLP, tied or untied head) on a
character corpus read from a text file, split 90/10 contiguously like nanoGPT's
``shakespeare_char``. Every recipe gets the same seconds of training: each recipe is first
calibrated (a few timed steps in its own pinned process), then trained for
``seconds * steps_per_second`` steps with its LR schedule stretched over exactly that many
steps. By default the budget is the time nanoGPT's reference recipe needs for its 2,000
iterations on the machine running the search (``--seconds`` overrides it).

Validation loss (nats/char) is measured two ways:
  * ``val_sample``: a fixed random sample of 200 batches x 12 windows of the validation split
    (nanoGPT's ``estimate_loss`` with ``eval_iters=200``; the same windows for every recipe),
    at 25/50/75/100 % of each recipe's steps;
  * ``val_full``: every non-overlapping block-64 window of the validation split, at the end.
Evaluation time is not counted in the training clock.

Usage (the lead exports the corpus first)::

    python -c "from archlab.data.text import shakespeare_text as t; \
open('/tmp/shakespeare.txt','w').write(t())"
    python benchmarks/lm_recipe_search.py /tmp/shakespeare.txt --parallel 8 --threads 2
    # smoke test on a small machine:
    python benchmarks/lm_recipe_search.py /tmp/shakespeare.txt --seconds 10 \
        --corpus-chars 200000 --parallel 1 --recipes ref,lr3e-3

Writes ``--out`` (default ``benchmarks/results/lm_recipe_search``) ``.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------- recipes


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training recipe. Defaults are nanoGPT's CPU baby-GPT (``train_shakespeare_char``)."""

    name: str
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    block: int = 64
    batch: int = 12
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # nanoGPT: min_lr 1e-4 = lr / 10
    warmup: int = 100
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1  # on 2-D weights only, like nanoGPT's configure_optimizers
    grad_clip: float = 1.0
    fused: bool = False  # AdamW(fused=True) (CPU kernel since torch 2.4)
    tied: bool = True  # nanoGPT ties wte and lm_head
    bias: bool = False  # nanoGPT's train.py default
    mlp_ratio: int = 4
    fixed_steps: int | None = None  # run exactly this many steps (ignores the time budget)

    @property
    def note(self) -> str:
        ref = Recipe(name="ref")
        diffs = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.name not in ("name", "fixed_steps") and getattr(self, f.name) != getattr(ref, f.name)
        ]
        return ", ".join(diffs) or "nanoGPT baby-GPT"


def default_recipes() -> list[Recipe]:
    """The candidate list: the reference, then one or two changes at a time, then combinations."""
    R = Recipe
    return [
        R("ref"),  # nanoGPT exact (steps stretched to the budget)
        R("ref_2000", fixed_steps=2000),  # nanoGPT exact, exactly 2,000 iterations
        R("ref_fused", fused=True),
        R("lr2e-3", lr=2e-3),
        R("lr3e-3", lr=3e-3),
        R("lr3e-3_fused", lr=3e-3, fused=True),
        R("b32_lr2e-3", batch=32, lr=2e-3),
        R("b32_lr3e-3", batch=32, lr=3e-3),
        R("b64_lr3e-3", batch=64, lr=3e-3),
        R("b32_lr3e-3_wu50", batch=32, lr=3e-3, warmup=50),
        R("b32_lr3e-3_min0", batch=32, lr=3e-3, min_lr_ratio=0.0),
        R("lr3e-3_wd0", lr=3e-3, weight_decay=0.0),
        R("w192_l4_lr2e-3", d_model=192, n_head=6, lr=2e-3),
        R("w96_l4_lr3e-3", d_model=96, n_head=4, lr=3e-3),
        R("w128_l3_lr3e-3", n_layer=3, lr=3e-3),
        R("w128_l6_lr2e-3", n_layer=6, lr=2e-3),
        R("w256_l2_b32_lr2e-3", d_model=256, n_head=4, n_layer=2, batch=32, lr=2e-3),
        R("untied_lr3e-3", tied=False, lr=3e-3),
        R("b32_lr3e-3_fused", batch=32, lr=3e-3, fused=True),
        R("b24_lr3e-3_fused", batch=24, lr=3e-3, fused=True),
        R("b16_lr3e-3_fused", batch=16, lr=3e-3, fused=True),
        R("lr5e-3_fused", lr=5e-3, fused=True),
        R("b32_lr6e-3_fused", batch=32, lr=6e-3, fused=True),
        R("b32_lr8e-3_fused", batch=32, lr=8e-3, fused=True),
        R("b32_lr6e-3_fused_min0", batch=32, lr=6e-3, fused=True, min_lr_ratio=0.0),
        R("b24_lr5e-3_fused", batch=24, lr=5e-3, fused=True),
        R("lr4e-3_fused_min0", lr=4e-3, fused=True, min_lr_ratio=0.0),
        R("b48_lr8e-3_fused", batch=48, lr=8e-3, fused=True),
        R("w256_l2_b32_lr4e-3_fused", d_model=256, n_layer=2, batch=32, lr=4e-3, fused=True),
    ]


# ---------------------------------------------------------------------------- model


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d: int, n_head: int, bias: bool, mlp_ratio: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d, bias=bias)
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.proj = nn.Linear(d, d, bias=bias)
        self.ln2 = nn.LayerNorm(d, bias=bias)
        self.fc = nn.Linear(d, mlp_ratio * d, bias=bias)
        self.fc_proj = nn.Linear(mlp_ratio * d, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)  # 3 x (B, T, D)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Decoder-only character GPT with nanoGPT's initialisation."""

    def __init__(self, vocab: int, r: Recipe) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, r.d_model)
        self.wpe = nn.Embedding(r.block, r.d_model)
        self.blocks = nn.ModuleList(Block(r.d_model, r.n_head, r.bias, r.mlp_ratio) for _ in range(r.n_layer))
        self.ln_f = nn.LayerNorm(r.d_model, bias=r.bias)
        self.head = nn.Linear(r.d_model, vocab, bias=False)
        if r.tied:
            self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * r.n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:t]  # (B, T, D)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))  # (B, T, V)


def make_optimizer(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    """AdamW with decay on 2-D tensors only (nanoGPT's configure_optimizers)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": r.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    kw = {"fused": True} if r.fused else {}  # else torch's default, as nanoGPT on CPU (a per-tensor loop)
    return torch.optim.AdamW(groups, lr=r.lr, betas=(r.beta1, r.beta2), **kw)


def lr_at(step: int, total: int, r: Recipe) -> float:
    """nanoGPT's get_lr: linear warmup, cosine decay to min_lr at ``total``."""
    min_lr = r.lr * r.min_lr_ratio
    warmup = min(r.warmup, max(1, total // 10))
    if step < warmup:
        return r.lr * (step + 1) / (warmup + 1)
    if step >= total:
        return min_lr
    ratio = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r.lr - min_lr)


# ---------------------------------------------------------------------------- data


def load_corpus(path: str, corpus_chars: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Character-encode the corpus; return (train, val) int64 token tensors and the vocab size."""
    text = Path(path).read_text(encoding="utf-8")
    if corpus_chars:
        text = text[:corpus_chars]
    chars = sorted(set(text))
    lut = np.zeros(max(map(ord, chars)) + 1, dtype=np.int64)
    lut[[ord(c) for c in chars]] = np.arange(len(chars))
    data = torch.from_numpy(lut[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)])
    n = int(0.9 * len(data))
    return data[:n].clone(), data[n:].clone(), len(chars)


def get_batch(data: torch.Tensor, batch: int, block: int, g: torch.Generator):
    """nanoGPT-style random windows: (x, y) each (B, T)."""
    ix = torch.randint(len(data) - block - 1, (batch,), generator=g)
    offs = ix[:, None] + torch.arange(block + 1)[None, :]  # (B, T+1)
    w = data[offs]
    return w[:, :-1], w[:, 1:]


@torch.no_grad()
def eval_sample(model: GPT, val: torch.Tensor, block: int, iters: int = 200, bs: int = 12) -> float:
    """Mean loss over a fixed (seed 1337) sample of ``iters`` x ``bs`` windows."""
    model.eval()
    g = torch.Generator().manual_seed(1337)
    ix = torch.randint(len(val) - block - 1, (iters * bs,), generator=g)
    offs = ix[:, None] + torch.arange(block + 1)[None, :]
    w = val[offs]
    tot = 0.0
    for i in range(0, len(w), 240):  # chunks of 20 nanoGPT batches: same mean, fewer calls
        c = w[i : i + 240]
        logits = model(c[:, :-1])
        tot += F.cross_entropy(logits.flatten(0, 1), c[:, 1:].flatten(), reduction="sum").item()
    model.train()
    return tot / (len(w) * block)


@torch.no_grad()
def eval_full(model: GPT, val: torch.Tensor, block: int, bs: int = 256) -> float:
    """Mean loss over every non-overlapping block window of the validation split."""
    model.eval()
    n = (len(val) - 1) // block
    x = val[: n * block].view(n, block)
    y = val[1 : n * block + 1].view(n, block)
    tot = 0.0
    for i in range(0, n, bs):
        logits = model(x[i : i + bs])
        tot += F.cross_entropy(logits.flatten(0, 1), y[i : i + bs].flatten(), reduction="sum").item()
    model.train()
    return tot / (n * block)


# ---------------------------------------------------------------------------- workers

_CTX: dict = {}


def _init_worker(core_q, threads: int, corpus: str, corpus_chars: int | None) -> None:
    """Pin this worker to its own cores, set its threads, load the corpus once."""
    cores = core_q.get()
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
    train, val, vocab = load_corpus(corpus, corpus_chars)
    _CTX.update(train=train, val=val, vocab=vocab, cores=list(cores or []))
    calibrate(Recipe("warmup"), 20, 1)  # first steps of a fresh process are slow (allocator, oneDNN)


def _step(model, opt, r, train, g, step, total) -> float:
    lr = lr_at(step, total, r)
    for group in opt.param_groups:
        group["lr"] = lr
    x, y = get_batch(train, r.batch, r.block, g)
    logits = model(x)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if r.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
    opt.step()
    return loss.detach()


def calibrate(r: Recipe, warm: int, timed: int) -> dict:
    """Steps per second of ``r`` in this worker: 1 / median step time after ``warm`` steps."""
    torch.manual_seed(0)
    model = GPT(_CTX["vocab"], r)
    opt = make_optimizer(model, r)
    g = torch.Generator().manual_seed(0)
    for s in range(warm):
        _step(model, opt, r, _CTX["train"], g, s, 2000)
    times = []
    for s in range(timed):
        t0 = time.perf_counter()
        _step(model, opt, r, _CTX["train"], g, warm + s, 2000)
        times.append(time.perf_counter() - t0)
    # The median step time is robust to a neighbour process stealing the core for a moment.
    return {"name": r.name, "calib_steps_per_s": 1.0 / float(np.median(times))}


def train(r: Recipe, steps: int, seed: int, seconds: float | None = None) -> dict:
    """Train ``steps`` steps; evaluate at 25/50/75/100 %; return the record.

    With ``seconds`` (and no ``r.fixed_steps``) the step count is re-planned from this process's
    own measured speed at 10 % (past the warmup, before the cosine has moved much) and again at
    50 % of the run (the neighbours' load changes), so every recipe trains about ``seconds``
    whatever the calibration's error. Evaluation time is not counted.
    """
    torch.manual_seed(seed)
    model = GPT(_CTX["vocab"], r)
    opt = make_optimizer(model, r)
    g = torch.Generator().manual_seed(seed)
    train_data, val = _CTX["train"], _CTX["val"]
    replan = bool(seconds) and not r.fixed_steps
    fracs = [0.25, 0.5, 0.75, 1.0]
    evals, t_train, t_eval, s, replans = [], 0.0, 0.0, 0, 0
    t0 = time.perf_counter()
    while s < steps:
        loss = _step(model, opt, r, train_data, g, s, steps)
        s += 1
        if replan and replans < 2 and s >= max(20, steps // 10) * (1 if replans == 0 else 5):
            steps = max(s + 4, round(seconds * s / (t_train + time.perf_counter() - t0)))
            replans += 1
        if s >= round(fracs[len(evals)] * steps) or s == steps:
            t1 = time.perf_counter()
            t_train += t1 - t0
            rec = {"step": s, "train_s": round(t_train, 2), "train_loss": round(float(loss), 4)}
            rec["val_sample"] = round(eval_sample(model, val, r.block), 4)
            if s == steps:
                rec["val_full"] = round(eval_full(model, val, r.block), 4)
            evals.append(rec)
            t0 = time.perf_counter()
            t_eval += t0 - t1
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "name": r.name,
        "note": r.note,
        "recipe": dataclasses.asdict(r),
        "params": n_params,
        "steps": steps,
        "train_s": round(t_train, 2),
        "eval_s": round(t_eval, 2),
        "steps_per_s": round(steps / t_train, 2),
        "tokens_per_s": round(steps * r.batch * r.block / t_train),
        "val_sample": evals[-1]["val_sample"],
        "val_full": evals[-1]["val_full"],
        "evals": evals,
        "cores": _CTX["cores"],
    }


# ---------------------------------------------------------------------------- main


def core_sets(parallel: int, threads: int) -> list[list[int] | None]:
    """Disjoint core sets of ``threads`` cores each, or None where the machine has too few."""
    if not hasattr(os, "sched_getaffinity"):
        return [None] * parallel
    avail = sorted(os.sched_getaffinity(0))
    if parallel * threads > len(avail):
        return [None] * parallel
    return [avail[i * threads : (i + 1) * threads] for i in range(parallel)]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def to_markdown(out: dict) -> str:
    m = out["meta"]
    lines = [
        "# Char-LM recipe search at equal wall time",
        "",
        f"Corpus: {m['corpus']} ({m['train_tokens']:,} train / {m['val_tokens']:,} val chars, "
        f"vocab {m['vocab']}); budget {m['seconds']:.1f} s of training per recipe "
        f"({m['budget_from']}); {m['parallel']} recipes at a time, {m['threads']} threads each "
        f"(pinned: {m['pinned']}); torch {m['torch']}, {m['cpu']}, {m['cpus']} CPUs.",
        "",
        "`val_sample`: fixed 200 x 12 random validation windows (nanoGPT's estimate_loss); "
        "`val_full`: all non-overlapping block-64 validation windows. Loss in nats/char. "
        "Sorted by val_full.",
        "",
        "| recipe | params | steps | steps/s | train s | val_sample @25/50/75/100% | val_full | changes vs nanoGPT |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in sorted(out["results"], key=lambda r: r["val_full"]):
        curve = " / ".join(f"{e['val_sample']:.3f}" for e in r["evals"])
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['steps']} | {r['steps_per_s']:.1f} | "
            f"{r['train_s']:.1f} | {curve} | **{r['val_full']:.4f}** | {r['note']} |"
        )
    if out.get("failed"):
        lines += ["", "Failed: " + ", ".join(f"{k}: {v}" for k, v in out["failed"].items())]
    return "\n".join(lines) + "\n"


def write_outputs(out: dict, stem: str) -> None:
    """Write ``stem``.json and ``stem``.md."""
    path = Path(stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    path.with_suffix(".md").write_text(to_markdown(out))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", help="UTF-8 text file (e.g. the exported Shakespeare plays)")
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="training seconds per recipe (default: the calibrated time of the reference's 2,000 steps)",
    )
    ap.add_argument("--parallel", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--threads", type=int, default=2, help="torch threads per recipe")
    ap.add_argument("--corpus-chars", type=int, default=None, help="use only the first N chars")
    ap.add_argument("--recipes", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    ap.add_argument("--calib-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--out", default="benchmarks/results/lm_recipe_search")
    a = ap.parse_args(argv)

    recipes = default_recipes()
    if a.list:
        for r in recipes:
            print(f"{r.name:24s} {r.note}")
        return {}
    if a.recipes:
        want = a.recipes.split(",")
        unknown = set(want) - {r.name for r in recipes}
        if unknown:
            ap.error(f"unknown recipes {sorted(unknown)}; --list shows them")
        recipes = [r for r in recipes if r.name in want]
    ref = Recipe("ref")

    ctx = mp.get_context("spawn")
    core_q = ctx.Manager().Queue()
    cores = core_sets(a.parallel, a.threads)
    for c in cores:
        core_q.put(c)
    train_t, val_t, vocab = load_corpus(a.corpus, a.corpus_chars)
    t_start = time.perf_counter()
    with cf.ProcessPoolExecutor(
        a.parallel,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(core_q, a.threads, a.corpus, a.corpus_chars),
    ) as pool:
        # Phase 1: calibrate every recipe (and the reference) under the same contention.
        todo = recipes if any(r.name == "ref" for r in recipes) else [ref, *recipes]
        warm = max(5, a.calib_steps // 3)
        # The reference sets the budget: calibrate it in every worker at once (the contention
        # of phase 2) for 3x longer, and take the median.
        ref_futs = [pool.submit(calibrate, ref, warm, 3 * a.calib_steps) for _ in range(a.parallel)]
        ref_sps = float(np.median([f.result()["calib_steps_per_s"] for f in ref_futs]))
        futs = {pool.submit(calibrate, r, warm, a.calib_steps): r for r in todo}
        sps = {futs[f].name: f.result()["calib_steps_per_s"] for f in cf.as_completed(futs)}
        sps["ref"] = ref_sps
        seconds = a.seconds if a.seconds else 2000 / ref_sps
        budget_from = "--seconds" if a.seconds else "reference's 2,000 steps, calibrated"
        print(
            f"budget {seconds:.1f} s/recipe; calibrated steps/s: " + ", ".join(f"{k} {v:.1f}" for k, v in sps.items()),
            flush=True,
        )
        # Phase 2: train, longest first so the pool drains evenly.
        plan = {r.name: r.fixed_steps or max(10, int(seconds * sps[r.name])) for r in recipes}
        futs = {
            pool.submit(train, r, plan[r.name], a.seed, seconds): r
            for r in sorted(recipes, key=lambda r: -plan[r.name] / sps[r.name])
        }
        out = {
            "meta": {
                "corpus": os.path.basename(a.corpus),
                "corpus_chars": a.corpus_chars,
                "train_tokens": len(train_t),
                "val_tokens": len(val_t),
                "vocab": vocab,
                "seconds": seconds,
                "budget_from": budget_from,
                "calib_steps_per_s": sps,
                "parallel": a.parallel,
                "threads": a.threads,
                "pinned": cores[0] is not None,
                "torch": torch.__version__,
                "cpu": cpu_name(),
                "cpus": os.cpu_count(),
            },
            "results": [],
            "failed": {},
        }
        results, failed = out["results"], out["failed"]
        for f in cf.as_completed(futs):
            r = futs[f]
            try:
                res = f.result()
            except Exception as e:  # one broken recipe must not lose the others
                failed[r.name] = repr(e)
                continue
            results.append(res)
            write_outputs(out, a.out)  # after each recipe: a killed search keeps what it has
            print(
                f"{res['name']:24s} steps {res['steps']:6d}  {res['steps_per_s']:6.1f} it/s  "
                f"val_full {res['val_full']:.4f}  val_sample {res['val_sample']:.4f}",
                flush=True,
            )

    out["meta"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_outputs(out, a.out)
    print(to_markdown(out))
    return out


if __name__ == "__main__":
    main()
