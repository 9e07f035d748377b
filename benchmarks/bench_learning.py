"""Learning-quality benchmarks: does archlab learn what the literature says it should?

Each benchmark trains the worked example of ``examples/<name>.yaml`` exactly as
``archlab train examples/<name>.yaml`` does, and compares its test figure with a target:

- digits CNN >= 98% test accuracy; GunPoint FCN / ResNet-1D >= 98%;
- MNIST-1D: beat the Greydanus (2020) table (MLP 68%, CNN 94%, GRU 91%) row by row;
- sunspots: test MAE below the seasonal-naive MAE on the held-out tail;
- Shakespeare: validation loss in nats/char and bits/char, with generated text;
- GAN / VAE / DDPM (and the class-conditional GAN / VAE, sampled with cycled labels, whose
  rows also report how often the judge agrees with the label) on digits: a digits CNN trained by archlab labels 500 samples; mean max
  probability >= 0.9 and the class histogram near uniform (total variation distance to uniform);
- RealNVP on moons: test NLL below a full-covariance Gaussian fitted to the training split;
- U-Net on ``digits_seg``: test mean IoU / mean Dice / pixel accuracy reported (no fixed target),
  with an input / true mask / predicted mask figure.

Usage::

    python benchmarks/bench_learning.py                 # everything (see the budget in the table)
    python benchmarks/bench_learning.py digits_cnn moons_realnvp   # a subset
    python benchmarks/bench_learning.py --seeds 3 digits_cnn       # mean ± std over training seeds 0, 1, 2

With ``--seeds N`` a row trains its example N times with training seeds 0..N-1 (the data split
stays the example's, so the spread is the training's: initial weights, batch order, dropout) and
reports its headline figure as mean ± sample std with the 95% t-interval
(:func:`archlab.runs.stats.summarize`); "met" then means met by every seed. Rows run without
``--seeds`` say "single run".

Writes ``benchmarks/results/learning.md`` (a subset run merges into the existing table) and
``benchmarks/results/learning.json``; sample grids and generated text go to
``benchmarks/results/learning/``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ART = RESULTS / "learning"
RUNS = ROOT / "runs" / "bench_learning"


#: train-config overrides for every example run (``--seeds`` sets the training seed here)
_OVERRIDES: dict[str, Any] = {}


def run_example(name: str, **train_overrides: Any):
    """Train examples/<name>.yaml like ``archlab train`` (same parsing), into runs/bench_learning."""
    from archlab.data import load
    from archlab.runs import RunSpec, fit

    spec = RunSpec.from_file(ROOT / "examples" / f"{name}.yaml")
    train = {**spec.train, **_OVERRIDES, **train_overrides}
    bundle = load(spec.data.name, **spec.data.options)
    return fit(
        spec.model.name,
        bundle,
        spec.task.name,
        task_options=spec.task.options,
        model_overrides=spec.model.options,
        data_spec={"name": spec.data.name, "options": spec.data.options},
        out_dir=str(RUNS),
        **train,
    )


def _acc(name: str, target: float, label: str) -> Callable[[], dict]:
    def bench() -> dict:
        r = run_example(name)
        acc = r.metrics["test_accuracy"]
        if name == "digits_cnn":
            _JUDGE.update(model=r.model.eval(), acc=acc)
        return {
            "result": f"test accuracy {acc:.2%}",
            "target": label,
            "met": acc >= target,
            "run": str(r.run_dir),
            **_headline("test accuracy", acc),
        }

    return bench


def _headline(metric: str, value: float | None) -> dict[str, Any]:
    """The row's one figure that ``--seeds`` summarises over seeds."""
    return {"metric": metric, "value": None if value is None else float(value)}


# -- digits classifier used to judge generated digits -----------------------------------------------
_JUDGE: dict[str, Any] = {}


def judge():
    if "model" not in _JUDGE:
        r = run_example("digits_cnn")
        _JUDGE.update(model=r.model.eval(), acc=r.metrics["test_accuracy"])
    return _JUDGE["model"]


def judge_samples(samples: torch.Tensor) -> tuple[float, float, list[int]]:
    """(mean max-probability, total variation distance of the class histogram to uniform, histogram)."""
    from archlab.data import load

    x = load("digits").normalize_inputs(samples.float())  # [0, 1] pixels -> the classifier's input scale
    classifier = judge()  # trains it on first use (outside no_grad)
    with torch.no_grad():
        p = classifier(x).softmax(-1)
    hist = torch.bincount(p.argmax(-1), minlength=10)
    tv = 0.5 * float((hist.float() / hist.sum() - 0.1).abs().sum())
    return float(p.max(-1).values.mean()), tv, hist.tolist()


def judge_agreement(samples: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples the judge labels with their conditioning class (conditional models)."""
    from archlab.data import load

    x = load("digits").normalize_inputs(samples.float())
    with torch.no_grad():
        pred = judge()(x).argmax(-1)
    return float((pred.cpu() == labels.cpu()).float().mean())


def _generative(name: str, steps: int | None = None, guidance: float | None = None) -> Callable[[], dict]:
    def bench() -> dict:
        from archlab.runs.generate import generate_from_run, write_generated

        r = run_example(name)
        g = generate_from_run(r.run_dir, 500, steps=steps, guidance=guidance, seed=0)
        conf, tv, hist = judge_samples(g.samples)
        agree = judge_agreement(g.samples, g.labels) if g.labels is not None else None
        g.samples, g.labels = g.samples[:64], (g.labels[:64] if g.labels is not None else None)
        write_generated(g, ART / f"{name}.png")
        how = f" (DDIM {steps} steps, guidance {guidance})" if steps else ""
        if agree is not None:
            how += f"; judge agrees with the conditioning label on {agree:.1%}"
        return {
            "result": f"mean max-prob {conf:.3f}; TV to uniform {tv:.3f}; histogram {hist}{how}",
            "target": "mean max-prob >= 0.9, histogram near uniform",
            "met": conf >= 0.9 and tv <= 0.15,
            "run": str(r.run_dir),
            **_headline("mean max-prob", conf),
            "grid": f"learning/{name}.png",
        }

    return bench


def _mnist1d(name: str, paper: float, row: str) -> Callable[[], dict]:
    def bench() -> dict:
        r = run_example(name)
        acc = r.metrics["test_accuracy"]
        return {
            "result": f"test accuracy {acc:.2%}",
            "target": f"beat paper {row} {paper:.0%}",
            "met": acc > paper,
            "run": str(r.run_dir),
            **_headline("test accuracy", acc),
        }

    return bench


def _sunspots(name: str) -> Callable[[], dict]:
    def bench() -> dict:
        r = run_example(name)
        m = r.metrics
        mae, naive = m.get("test_mae"), m.get("test_naive_mae")
        return {
            "result": f"test MAE {mae:.4f} vs seasonal-naive {naive:.4f} (normalised units)",
            "target": "MAE < seasonal-naive MAE",
            "met": mae is not None and naive is not None and mae < naive,
            "run": str(r.run_dir),
            **_headline("test MAE", mae),
        }

    return bench


def _shakespeare(name: str) -> Callable[[], dict]:
    def bench() -> dict:
        from archlab.runs.generate import generate_from_run, write_generated

        r = run_example(name)
        nats = r.metrics["val_nats_per_token"]
        g = generate_from_run(r.run_dir, 300, seed=0, temperature=0.8)
        write_generated(g, ART / f"{name}.txt")
        return {
            "result": f"val {nats:.3f} nats/char = {nats / 0.6931471805599453:.3f} bits/char",
            "target": "report (no fixed target)",
            "met": None,
            "run": str(r.run_dir),
            "text": g.text[:200],
            **_headline("val nats/char", nats),
        }

    return bench


def _flow() -> dict:
    from archlab.runs.generate import generate_from_run, write_generated

    r = run_example("moons_realnvp")
    nll, gauss = r.metrics["test_nll"], r.metrics["test_gaussian_nll"]
    g = generate_from_run(r.run_dir, 1000, seed=0)
    write_generated(g, ART / "moons_realnvp.png")
    return {
        "result": f"test NLL {nll:.3f} nats vs fitted Gaussian {gauss:.3f}",
        "target": "NLL < Gaussian NLL",
        "met": nll < gauss,
        "run": str(r.run_dir),
        **_headline("test NLL", nll),
        "grid": "learning/moons_realnvp.png",
    }


def _segmentation(name: str) -> Callable[[], dict]:
    def bench() -> dict:
        from archlab.data import load
        from archlab.runs import RunSpec

        r = run_example(name)
        m = r.metrics
        spec = RunSpec.from_file(ROOT / "examples" / f"{name}.yaml")
        bundle = load(spec.data.name, **spec.data.options)  # the same seeded data the run trained on
        grid = _segmentation_figure(r.model, bundle, ART / f"{name}.png")
        return {
            "result": f"test mIoU {m['test_iou']:.3f}, mean Dice {m['test_dice']:.3f}, "
            f"pixel accuracy {m['test_pixel_accuracy']:.2%} ({bundle.info['num_classes']} classes)",
            "target": "report",
            "met": None,
            "run": str(r.run_dir),
            "figure": grid,
            **_headline("test mIoU", m["test_iou"]),
        }

    return bench


def _segmentation_figure(model, data, path: Path, n: int = 8) -> str:
    """Input / true mask / predicted mask of the first ``n`` test images, one column each."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from archlab.io import atomic_write_bytes

    test = data.test
    device = next(model.parameters()).device
    idx = torch.linspace(0, len(test) - 1, n).long()  # spread over the test split (ordered by source digit)
    x, target = test.inputs[0][idx], test.target[idx]
    with torch.no_grad():
        pred = model.eval()(x.to(device)).argmax(1).cpu()  # (n, C, H, W) logits -> (n, H, W) classes
    names = data.info["class_names"]
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2))
    for j in range(n):
        rows = [(x[j, 0], "gray", None, None), (target[j], "tab20", 0, 19), (pred[j], "tab20", 0, 19)]
        for i, (img, cmap, vmin, vmax) in enumerate(rows):
            ax = axes[i, j]
            ax.imshow(img.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, j].set_title(f"digit {names[int(target[j].max())]}" if len(names) > 2 else "", fontsize=8)
    for i, label in enumerate(("input", "true mask", "predicted")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return f"learning/{path.name}"


def _simple(name: str, keys: list[str], target: str = "report") -> Callable[[], dict]:
    def bench() -> dict:
        r = run_example(name)
        return {
            "result": ", ".join(f"{k} {r.metrics[k]:.3f}" for k in keys if k in r.metrics),
            "target": target,
            "met": None,
            "run": str(r.run_dir),
            **_headline(keys[0], r.metrics.get(keys[0])),
        }

    return bench


BENCHES: dict[str, Callable[[], dict]] = {
    "digits_cnn": _acc("digits_cnn", 0.98, ">= 98%"),
    "digits_resnet": _acc("digits_resnet", 0.98, ">= 98%"),
    "gunpoint_fcn": _acc("gunpoint_fcn", 0.98, ">= 98%"),
    "gunpoint_resnet1d": _acc("gunpoint_resnet1d", 0.98, ">= 98%"),
    "mnist1d_mlp": _mnist1d("mnist1d_mlp", 0.68, "MLP"),
    "mnist1d_cnn": _mnist1d("mnist1d_cnn", 0.94, "CNN"),
    "mnist1d_gru": _mnist1d("mnist1d_gru", 0.91, "GRU"),
    "mnist1d_resnet1d": _mnist1d("mnist1d_resnet1d", 0.94, "CNN (best-architecture row)"),
    "mnist1d_ssm": _mnist1d("mnist1d_ssm", 0.91, "GRU (sequence-model row)"),
    "sunspots_lstm": _sunspots("sunspots_lstm"),
    "sunspots_ssm": _sunspots("sunspots_ssm"),
    "sunspots_tcn": _sunspots("sunspots_tcn"),
    "shakespeare_gpt": _shakespeare("shakespeare_gpt"),
    "shakespeare_lstm": _shakespeare("shakespeare_lstm"),
    "digits_unet_seg": _segmentation("digits_unet_seg"),
    "digits_gan": _generative("digits_gan"),
    "digits_vae": _generative("digits_vae"),
    "digits_ddpm": _generative("digits_ddpm", steps=50, guidance=2.0),
    "digits_cgan": _generative("digits_cgan"),
    "digits_cvae": _generative("digits_cvae"),
    "moons_realnvp": _flow,
    "digits_anomaly_ae": _simple("digits_anomaly_ae", ["test_auroc", "test_recall", "test_false_alarm_rate"]),
    "digits_siamese": _simple("digits_siamese", ["test_recall_at_1", "test_recall_at_5"]),
    "karate_gcn": _simple("karate_gcn", ["test_accuracy"]),
    "karate_gat": _simple("karate_gat", ["test_accuracy"]),
    "graph_motifs_gcn": _simple("graph_motifs_gcn", ["test_accuracy"]),
    "affairs_wide_deep": _simple("affairs_wide_deep", ["test_auroc", "test_log_loss", "test_normalized_entropy"]),
    "affairs_dlrm": _simple("affairs_dlrm", ["test_auroc", "test_log_loss", "test_normalized_entropy"]),
    # the contenders on their own modality, against the baseline a user would try first (same split)
    "airline_dlinear": _sunspots("airline_dlinear"),
    "airline_nbeats": _sunspots("airline_nbeats"),
    "gunpoint_inception_time": _acc("gunpoint_inception_time", 0.98, ">= 98%"),
    "arrowhead_rocket": _acc("arrowhead_rocket", 0.843, ">= 84.3% (sktime's MiniRocket 86.3%, less 2 points)"),
    "wine_ft_transformer": _acc("wine_ft_transformer", 0.99, ">= 99% (gradient boosting 100%, less 1 point)"),
    "breast_cancer_tabular_resnet": _acc(
        "breast_cancer_tabular_resnet", 0.9635, ">= 96.4% (gradient boosting 97.3%, less 1 point)"
    ),
}


def render(results: dict[str, dict]) -> str:
    total = sum(r.get("wall_s", 0) for r in results.values())
    lines = [
        "# Learning quality",
        "",
        "`python benchmarks/bench_learning.py [--seeds N] [NAME ...]` - each row trains `examples/NAME.yaml` as "
        "`archlab train examples/NAME.yaml` does (CPU, `torch.set_num_threads(1)`, a 2-core machine shared "
        "with other jobs, so wall times are pessimistic).",
        "",
        "'over seeds': the row's headline figure as mean ± sample std over training seeds 0..N-1 with its "
        "95% t-interval (`--seeds N`; the data split is the example's, so this is the training's spread); "
        "'result' is seed 0's run; with several seeds 'met' means met by every seed. "
        "'single run' rows were trained once (time).",
        "",
        "| benchmark | result | over seeds | target | met | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | | **no** | {r.get('wall_s', 0):.0f} s |")
            continue
        lines.append(f"| {name} | {r['result']} | {_spread_cell(r)} | {r['target']} | {met} | {r['wall_s']:.0f} s |")
    lines += ["", f"Total wall time of the rows above: {total:.0f} s.", ""]
    for name, r in results.items():
        if r.get("grid"):
            lines.append(f"- {name}: samples in `benchmarks/results/{r['grid']}`")
        if r.get("figure"):
            lines.append(f"- {name}: test inputs, true and predicted masks in `benchmarks/results/{r['figure']}`")
        if r.get("text"):
            lines.append(f"- {name}: generated text (first 200 characters): `{r['text']!r}`")
    return "\n".join(lines) + "\n"


def _spread_cell(r: dict[str, Any]) -> str:
    s = r.get("spread")
    if not s:
        return "single run"
    pct = "accuracy" in r.get("metric", "")
    f = (lambda v: f"{100 * v:.2f}") if pct else (lambda v: f"{v:.3g}")
    unit = "%" if pct else ""
    return (
        f"{r['metric']} {f(s['mean'])} ± {f(s['std'])}{unit} (n={s['n']}; 95% CI [{f(s['ci95_low'])}, "
        f"{f(s['ci95_high'])}]{unit})"
    )


def run_seeds(name: str, seeds: int) -> dict[str, Any]:
    """The row once per training seed; seed 0's result with the headline's spread over all of them."""
    from archlab.runs.stats import summarize

    runs = []
    for s in range(seeds):
        _OVERRIDES["seed"] = s
        torch.manual_seed(s)
        try:
            runs.append(BENCHES[name]())
        finally:
            _OVERRIDES.pop("seed", None)
    res = dict(runs[0])
    values = [r.get("value") for r in runs]
    if seeds > 1 and all(v is not None for v in values):
        res["values"] = values
        res["spread"] = summarize(values)
        mets = [r.get("met") for r in runs]
        res["met"] = None if any(m is None for m in mets) else all(mets)
    return res


def main(argv: list[str]) -> int:
    import argparse

    from archlab.io import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="rows to run (default all)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per row (default 1: a single run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    names = args.names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmarks {unknown}; known: {list(BENCHES)}")
        return 2
    ART.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "learning.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    for name in names:
        t0 = time.perf_counter()
        try:
            res = run_seeds(name, args.seeds)
        except Exception as exc:  # a failing row is reported, not hidden
            res = {"error": f"{type(exc).__name__}: {exc}"[:300], "met": False}
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        results[name] = res
        print(f"{name}: {res.get('result', res.get('error'))} [{res['wall_s']:.0f} s]", flush=True)
        atomic_write_text(store, json.dumps(results, indent=1))
        atomic_write_text(RESULTS / "learning.md", render({k: results[k] for k in BENCHES if k in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
