"""Many models at once: N members trained as one vmapped stack vs one after another, side by side.

Three tables, one run (``benchmarks/results/stack.md``):

1. **16 members** of an MLP (``mlp_784_128_10``'s 784-128-10 shape, its input adapted to
   MNIST-1D's 40 values: 40-128-10) and of ``cnn1d_mnist1d`` on MNIST-1D, batch 64, ``--steps``
   optimizer steps (1,000 by default), evaluation once per epoch, at 1 and 2 threads: one
   ``fit_stack`` call vs 16 ``train_model`` calls with the same seeds. Wall time of the whole
   training (build, loop, evaluations, checkpoints, final metrics) and the members' test
   accuracy, mean and spread, for both.
2. **Crossover**: members per stack (1, 2, ..., 32) vs speed-up, for a small (``mlp_784_128_10``),
   medium (``cnn1d_mnist1d``) and large (``resnet1d_mnist1d``) preset on random data of each
   preset's input shape: the stack's loop time for ``--cross-steps`` steps against N times one
   single run's loop time for the same steps (1 thread). ``train.stack: auto`` uses the rule read
   from it (:data:`archlab.runs.stacked.CPU_FLOP_LIMIT`).
3. **Groups through the runs layer**: ``repeat_seeds`` with 5 seeds on ``examples/digits_cnn.yaml``
   (``--digits-epochs``, 40 in the example) and ``cross_validate`` with 5 folds on iris, with
   ``train.stack`` auto vs off.

    python benchmarks/bench_stack.py                  # the full sizes (long on a loaded 2-core machine)
    python benchmarks/bench_stack.py --steps 200 --cross-steps 5 --large-max 8 --digits-epochs 5   # the recorded run
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

import archlab
from archlab.data import load
from archlab.data.base import DataBundle, Split
from archlab.io import atomic_write_text
from archlab.runs.cv import cross_validate
from archlab.runs.seeds import repeat_seeds
from archlab.runs.stacked import CPU_FLOP_LIMIT, train_step_flops
from archlab.tasks import get_task
from archlab.train import TrainConfig, train_model
from archlab.train.stacked import StackMember, fit_stack
from archlab.train.state import seed_everything

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "stack.md"

MODELS = {  # name -> (preset, overrides, data layout)
    "mlp 40-128-10": ("mlp_784_128_10", {"in_features": 40}, "flat"),
    "cnn1d_mnist1d": ("cnn1d_mnist1d", {}, "channels"),
}


def _members(preset, overrides, data, cfgs, root: Path) -> list[StackMember]:
    out = []
    for i, cfg in enumerate(cfgs):
        seed_everything(cfg.seed)
        out.append(
            StackMember(archlab.create(preset, **overrides), data, get_task("classification"), cfg, root / f"m{i}")
        )
    return out


def _sequential(preset, overrides, data, cfgs, root: Path) -> list[dict]:
    out = []
    for i, cfg in enumerate(cfgs):
        seed_everything(cfg.seed)
        model = archlab.create(preset, **overrides)
        out.append(
            train_model(model, data, get_task("classification"), cfg, run_dir=root / f"s{i}", seed=False).metrics
        )
    return out


def _acc(metrics: list[dict]) -> str:
    acc = [100 * m["test_accuracy"] for m in metrics]
    return f"{statistics.mean(acc):.1f} ± {statistics.stdev(acc):.1f}"


def headline(steps: int, members: int, tmp: Path) -> list[str]:
    rows = []
    for label, (preset, overrides, layout) in MODELS.items():
        data = load("mnist1d", layout=layout)
        cfgs = [
            TrainConfig.build(
                {"max_steps": steps, "batch_size": 64, "lr": 3e-3, "seed": s, "device": "cpu", "precision": "fp32"}
            )
            for s in range(members)
        ]
        warm = [c.replace(max_steps=3) for c in cfgs[:2]]  # imports and first calls, untimed
        fit_stack(_members(preset, overrides, data, warm, tmp / f"{label}w"), stack_dir=tmp / f"{label}ws")
        _sequential(preset, overrides, data, warm[:1], tmp / f"{label}w1")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            stacked = [
                r.metrics
                for r in fit_stack(
                    _members(preset, overrides, data, cfgs, tmp / f"{label}{threads}st"),
                    stack_dir=tmp / f"{label}{threads}stack",
                )
            ]
            t_stack = time.perf_counter() - t0
            t0 = time.perf_counter()
            seq = _sequential(preset, overrides, data, cfgs, tmp / f"{label}{threads}seq")
            t_seq = time.perf_counter() - t0
            rows.append(
                f"| {label} | {threads} | {t_seq:.1f} | {t_stack:.1f} | **{t_seq / t_stack:.2f}x** | {_acc(seq)} | {_acc(stacked)} |"
            )
            print(rows[-1], flush=True)
    return rows


def _random_bundle(preset: str, n: int = 512) -> DataBundle:
    net = archlab.create(preset)
    x = net.example_input(batch_size=n)
    x = x if isinstance(x, tuple) else (x,)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n,), generator=g)
    split = Split(tuple(torch.randn(t.shape, generator=g) for t in x), y)
    return DataBundle(
        preset, "tabular", "classification", split, split.take(torch.arange(64)), info={"num_classes": 10}
    )


def crossover(steps: int, sizes: list[int], large_max: int, tmp: Path) -> list[str]:
    torch.set_num_threads(1)
    rows = []
    for label, preset in (("small", "mlp_784_128_10"), ("medium", "cnn1d_mnist1d"), ("large", "resnet1d_mnist1d")):
        data = _random_bundle(preset)
        flops = train_step_flops(archlab.create(preset), data.train.take(torch.arange(64)))
        base = {"max_steps": steps, "batch_size": 64, "eval_every": steps, "device": "cpu", "precision": "fp32"}
        one = _sequential(preset, {}, data, [TrainConfig.build({**base, "seed": 0})], tmp / f"x{label}")[0]
        t_one = one["train_time_s"]
        cells = []
        for n in sizes:
            if label == "large" and n > large_max:
                cells.append("—")
                continue
            cfgs = [TrainConfig.build({**base, "seed": s}) for s in range(n)]
            res = fit_stack(_members(preset, {}, data, cfgs, tmp / f"x{label}{n}"), stack_dir=tmp / f"x{label}{n}s")
            cells.append(f"{n * t_one / res[0].metrics['train_time_s']:.2f}")
        rows.append(
            f"| {label}: {preset} | {flops / 1e9:.3g} | {t_one / steps * 1e3:.1f} | " + " | ".join(cells) + " |"
        )
        print(rows[-1], flush=True)
    return rows


def groups(digits_epochs: int, tmp: Path) -> list[str]:
    torch.set_num_threads(1)
    ex = yaml.safe_load((ROOT.parent / "examples" / "digits_cnn.yaml").read_text())
    train = {**ex["train"], "epochs": digits_epochs, "device": "cpu"}
    data = load(ex["data"]["name"], **{k: v for k, v in ex["data"].items() if k != "name"})
    rows = []
    for label, call in (
        (
            f"--seeds 5, digits_cnn.yaml ({digits_epochs} epochs)",
            lambda how, d: repeat_seeds(ex["model"], data, n=5, out_dir=d, stack=how, **train),
        ),
        (
            "--cv 5, mlp_tabular on iris (default length)",
            lambda how, d: cross_validate("mlp_tabular", "iris", k=5, out_dir=d, stack=how),
        ),
    ):
        times, accs = {}, {}
        for how in ("off", "auto"):
            t0 = time.perf_counter()
            r = call(how, tmp / f"g{how}{len(rows)}")
            times[how] = time.perf_counter() - t0
            key = "test_accuracy" if "test_accuracy" in r.summary else "val_accuracy"
            accs[how] = f"{100 * r.summary[key]['mean']:.1f} ± {100 * r.summary[key]['std']:.1f}"
        rows.append(
            f"| {label} | {times['off']:.1f} | {times['auto']:.1f} | **{times['off'] / times['auto']:.2f}x** | {accs['off']} | {accs['auto']} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--cross-steps", type=int, default=20)
    ap.add_argument("--sizes", default="1,2,4,8,16,32")
    ap.add_argument("--digits-epochs", type=int, default=40)
    ap.add_argument("--large-max", type=int, default=32, help="largest stack of the large preset (its steps are slow)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: headline, crossover, groups")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    sizes = [int(s) for s in args.sizes.split(",")]
    flags = sorted(set(re.findall(r"avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2", Path("/proc/cpuinfo").read_text())))
    load_before = os.getloadavg()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        head = headline(args.steps, args.members, tmp) if "headline" not in skip else []
        cross = crossover(args.cross_steps, sizes, args.large_max, tmp) if "crossover" not in skip else []
        grp = groups(args.digits_epochs, tmp) if "groups" not in skip else []
    load_after = os.getloadavg()
    lines = [
        "# Many models at once: a vmapped stack vs one run after another",
        "",
        f"`python benchmarks/bench_stack.py --steps {args.steps} --members {args.members} --cross-steps {args.cross_steps} "
        f"--sizes {args.sizes} --large-max {args.large_max} --digits-epochs {args.digits_epochs}` — torch {torch.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, flags {' '.join(flags) or 'none'}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (the machine is shared); {time.perf_counter() - t_all:.0f} s in all.",
        "",
    ]
    if head:
        lines += [
            f"## {args.members} members, MNIST-1D, batch 64, {args.steps} steps, evaluation each epoch",
            "",
            "Wall time of the whole training of every member (build, loop, evaluations, checkpoints, final metrics).",
            "",
            "| model | threads | one at a time (s) | stacked (s) | speed-up | test acc. one at a time (%) | test acc. stacked (%) |",
            "|---|---|---|---|---|---|---|",
            *head,
            "",
        ]
    if cross:
        lines += [
            f"## Crossover: speed-up by members per stack ({args.cross_steps} steps, batch 64, 1 thread, random data)",
            "",
            "Speed-up = N x one run's loop time / the stack's loop time for the same steps.",
            "",
            "| preset | train GFLOP/step | one run ms/step | " + " | ".join(f"N={n}" for n in sizes) + " |",
            "|---|---|---|" + "---|" * len(sizes),
            *cross,
            "",
            f"`train.stack: auto` stacks on CPU while a member's training step is under {CPU_FLOP_LIMIT / 1e9:.3g} GFLOP "
            "(archlab.runs.stacked.CPU_FLOP_LIMIT), read from this table.",
            "",
        ]
    if grp:
        lines += [
            "## Groups through the runs layer (1 thread)",
            "",
            "| group | stack off (s) | stack auto (s) | speed-up | mean ± std off (%) | mean ± std auto (%) |",
            "|---|---|---|---|---|---|",
            *grp,
            "",
        ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, "\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
