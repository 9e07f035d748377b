"""Seed 003's LSTM sine-forecasting example as written vs archlab on the same data.

The seed (003, "Time Series Prediction with LSTMs") trains ``LSTM(1, 64, 1)`` with Adam lr 1e-3
for 100 epochs, one window at a time (batch 1, a fresh hidden state per sample), on a noisy sine
(1,000 points, windows of 50, next value as target, 80/20 split), and predicts the test windows
carrying the hidden state from one window to the next, as its code does. archlab trains its
``lstm_sine_forecaster`` preset (the same LSTM(1, 64) + Linear) on the same windows with
mini-batches. Both test MSEs are computed on the same test windows; archlab's time is the whole
``fit`` call (evaluations, checkpoints, final metrics and the curves plot included; one-off
imports are done before either timer starts).

    python benchmarks/bench_lstm_sine.py                 # writes benchmarks/results/lstm_sine.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import archlab
from archlab.data.base import DataBundle, Split
from archlab.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "lstm_sine.md"


def seed_data(seed: int = 0):
    """The seed's data, built the way its code builds it (np.random seeded for repeatability)."""
    np.random.seed(seed)
    data = np.sin(np.linspace(0, 20, 1000)) + 0.2 * np.random.randn(1000)
    data = (data - np.mean(data)) / np.std(data)
    seq_length = 50
    X, y = [], []
    for i in range(len(data) - seq_length - 1):
        X.append(data[i : i + seq_length])
        y.append(data[i + seq_length])
    X, y = np.array(X), np.array(y)
    n = int(len(X) * 0.8)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return f(X[:n]).unsqueeze(2), f(X[n:]).unsqueeze(2), f(y[:n]), f(y[n:])


class SeedLSTM(nn.Module):
    """The seed's model, as written."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x, hidden):
        out, hidden = self.lstm(x, hidden)
        return self.fc(out[-1]), hidden

    def init_hidden(self):
        return torch.zeros(1, 1, self.hidden_size), torch.zeros(1, 1, self.hidden_size)


def run_seed(X_train, X_test, y_train, y_test, epochs: int) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = SeedLSTM(1, 64, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    criterion = nn.MSELoss()
    t0 = time.perf_counter()
    for _epoch in range(epochs):
        for i in range(len(X_train)):
            hidden = model.init_hidden()
            optimizer.zero_grad()
            outputs, hidden = model(X_train[i].unsqueeze(1), hidden)
            loss = criterion(outputs, y_train[i])  # (1, 1) vs () broadcasts, as in the seed
            loss.backward()
            optimizer.step()
    train_time = time.perf_counter() - t0
    with torch.no_grad():
        preds, hidden = [], model.init_hidden()
        for i in range(len(X_test)):
            output, hidden = model(X_test[i].unsqueeze(1), hidden)  # hidden carried over, as written
            preds.append(output.item())
        mse_as_written = float(((torch.tensor(preds) - y_test) ** 2).mean())
        fresh = torch.stack(
            [model(X_test[i].unsqueeze(1), model.init_hidden())[0].reshape(()) for i in range(len(X_test))]
        )
        mse_fresh = float(((fresh - y_test) ** 2).mean())
    return train_time, mse_as_written, mse_fresh


def run_archlab(X_train, X_test, y_train, y_test, epochs: int, out_dir: str) -> tuple[float, float]:
    n_val = len(X_train) // 10  # the last 10% of the training windows pick the best checkpoint
    data = DataBundle(
        "seed003-sine",
        "sequence",
        "forecasting",
        train=Split((X_train[:-n_val],), y_train[:-n_val, None]),
        val=Split((X_train[-n_val:],), y_train[-n_val:, None]),
        test=Split((X_test,), y_test[:, None]),
        info={"horizon": 1, "seq_len": 50, "in_features": 1},
    )
    torch.manual_seed(0)
    t0 = time.perf_counter()
    r = archlab.fit(
        "lstm_sine_forecaster",
        data,
        epochs=epochs,
        batch_size=32,
        lr=1e-2,
        grad_clip=1.0,
        precision="fp32",
        out_dir=out_dir,
        run_name="lstm",
        seed=0,
    )
    return time.perf_counter() - t0, r.metrics["test_rmse"] ** 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-epochs", type=int, default=100, help="the seed's 100 epochs by default")
    ap.add_argument("--archlab-epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X_train, X_test, y_train, y_test = seed_data()
    # One-off imports (torchmetrics, and torch._dynamo pulled in by the first torch optimizer) are
    # paid before either timer starts: neither loop's per-run cost.
    import torchmetrics  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    with tempfile.TemporaryDirectory() as tmp:
        a_time, a_mse = run_archlab(X_train, X_test, y_train, y_test, args.archlab_epochs, tmp)
    print(f"archlab: {a_time:.1f} s, test MSE {a_mse:.4f}", flush=True)
    s_time, s_mse, s_mse_fresh = run_seed(X_train, X_test, y_train, y_test, args.seed_epochs)
    print(f"seed loop: {s_time:.1f} s, test MSE {s_mse:.4f} (fresh hidden per window {s_mse_fresh:.4f})", flush=True)
    lines = [
        "# Seed 003 LSTM sine forecasting: the seed's per-sample loop vs archlab",
        "",
        f"Command: `python benchmarks/bench_lstm_sine.py` ({args.threads} thread(s), shared 2-core CPU). "
        "Same data (seed's recipe, np.random.seed(0)), same test windows.",
        "",
        "| loop | epochs | wall time (s) | s/epoch | test MSE |",
        "|---|---:|---:|---:|---:|",
        f"| seed 003 as written (batch 1, Adam 1e-3) | {args.seed_epochs} | {s_time:.1f} | {s_time / args.seed_epochs:.2f} | {s_mse:.4f} |",
        f"| archlab `lstm_sine_forecaster` (batch 32, AdamW 1e-2, warmup+cosine, clip 1) | {args.archlab_epochs} | "
        f"{a_time:.1f} | {a_time / args.archlab_epochs:.2f} | {a_mse:.4f} |",
        "",
        f"archlab time / seed time: **1/{s_time / a_time:.1f}** (target <= 1/20); test MSE archlab "
        f"{a_mse:.4f} vs seed {s_mse:.4f} ({'same or lower' if a_mse <= s_mse else 'HIGHER'}). "
        f"The seed's predictions carry the LSTM state across test windows as its code does; with a fresh "
        f"state per window its test MSE is {s_mse_fresh:.4f}.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
