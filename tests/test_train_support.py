"""Shared helpers of the trainer tests (no tests here): small real datasets as DataBundles.

Built straight from scikit-learn so the trainer tests do not depend on archlab.data's loaders.
"""

from __future__ import annotations

import torch

from archlab.data.base import DataBundle, Split


def _split3(n: int, seed: int = 0):
    p = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = int(0.7 * n), int(0.85 * n)
    return p[:a], p[a:b], p[b:]


def digits_bundle(n: int | None = None) -> DataBundle:
    """scikit-learn digits: 8x8 images flattened to 64 features in [0, 1], 10 classes."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    if n is not None:
        x, y = x[:n], y[:n]
    tr, va, te = _split3(len(x))
    return DataBundle(
        "digits",
        "tabular",
        "classification",
        Split((x[tr],), y[tr]),
        Split((x[va],), y[va]),
        Split((x[te],), y[te]),
        info={"num_classes": 10, "in_features": 64},
    )


def digits_images_bundle() -> DataBundle:
    """Digits as (N, 1, 8, 8) images."""
    b = digits_bundle()

    def img(s):
        return Split((s.inputs[0].reshape(-1, 1, 8, 8),), s.target)

    return DataBundle(
        "digits",
        "image",
        "classification",
        img(b.train),
        img(b.val),
        img(b.test),
        info={"num_classes": 10, "in_channels": 1},
    )


def diabetes_bundle() -> DataBundle:
    """scikit-learn diabetes regression: 10 standardised features, target standardised on train."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = torch.tensor(d.data, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.float32)
    tr, va, te = _split3(len(x))
    mu, sd = x[tr].mean(0), x[tr].std(0)
    ym, ys = y[tr].mean(), y[tr].std()
    x, y = (x - mu) / sd, (y - ym) / ys
    return DataBundle(
        "diabetes",
        "tabular",
        "regression",
        Split((x[tr],), y[tr]),
        Split((x[va],), y[va]),
        Split((x[te],), y[te]),
        info={"in_features": 10},
    )


def sunspots_bundle(window: int = 22, horizon: int = 3) -> DataBundle:
    """statsmodels yearly sunspots as (N, window, 1) windows -> (N, horizon) targets; season 11."""
    import statsmodels.api as sm

    s = torch.tensor(sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(), dtype=torch.float32)
    n_train = int(0.7 * len(s))
    s = (s - s[:n_train].mean()) / s[:n_train].std()
    xs, ys = [], []
    for i in range(len(s) - window - horizon + 1):
        xs.append(s[i : i + window])
        ys.append(s[i + window : i + window + horizon])
    x, y = torch.stack(xs).unsqueeze(-1), torch.stack(ys)
    a, b = int(0.7 * len(x)), int(0.85 * len(x))
    return DataBundle(
        "sunspots",
        "sequence",
        "forecasting",
        Split((x[:a],), y[:a]),
        Split((x[a:b],), y[a:b]),
        Split((x[b:],), y[b:]),
        info={"season": 11, "horizon": horizon, "seq_len": window, "in_features": 1},
    )


def run_child(code: str, *args: str) -> int:
    """Run ``python -c code args...`` single-threaded; its return code, 0 or -9 (SIGKILLed by itself).

    The kill-and-resume tests run training in such a child so that it can SIGKILL itself.
    """
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, -9):
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode
