"""Bundled tabular and 2-D point datasets from scikit-learn (shipped with the package, offline).

Shapes:
- tabular: inputs ``(N, F)`` float32, standardised per feature with train statistics
  (``info["normalization"]``); classification targets ``(N,)`` int64 in ``0..K-1``; regression
  targets ``(N, 1)`` float32.
- points (moons, circles): inputs ``(N, 2)`` float32, targets ``(N,)`` int64 (which moon / ring),
  useful for flows, diffusion and GAN sanity checks as well as classification.
"""

from __future__ import annotations

import numpy as np

from archlab.data.base import DataBundle
from archlab.data.splits import supervised_bundle
from archlab.errors import DataError, require


def _sklearn_datasets():
    return require("sklearn.datasets", "data", "scikit-learn's bundled datasets")


def _sk_table(
    name: str,
    loader_name: str,
    task: str,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    normalize: bool,
    normalize_target: bool = False,
) -> DataBundle:
    raw = getattr(_sklearn_datasets(), loader_name)()
    x = np.asarray(raw.data, dtype=np.float64)
    y = np.asarray(raw.target)
    info = {
        "in_features": int(x.shape[1]),
        "feature_names": [str(f) for f in raw.feature_names],
        "source": f"sklearn.datasets.{loader_name}",
    }
    if task == "classification":
        y = y.astype(np.int64)
        info["num_classes"] = int(y.max() + 1)
        info["class_names"] = [str(c) for c in raw.target_names]
    else:
        y = y.astype(np.float64).reshape(-1, 1)
        info["out_features"] = 1
    return supervised_bundle(
        name,
        "tabular",
        task,
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        normalize_target=normalize_target,
        info=info,
    )


def load_breast_cancer(
    *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, normalize: bool = True
) -> DataBundle:
    """Wisconsin breast cancer: 569 samples, 30 features, 2 classes.

    Returns inputs (N, 30) float32 standardised with train statistics, target (N,) int64.
    """
    return _sk_table(
        "breast_cancer",
        "load_breast_cancer",
        "classification",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
    )


def load_wine(
    *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, normalize: bool = True
) -> DataBundle:
    """Wine recognition: 178 samples, 13 features, 3 classes.

    Returns inputs (N, 13) float32 standardised with train statistics, target (N,) int64.
    """
    return _sk_table(
        "wine",
        "load_wine",
        "classification",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
    )


def load_iris(
    *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, normalize: bool = True
) -> DataBundle:
    """Iris: 150 samples, 4 features, 3 classes.

    Returns inputs (N, 4) float32 standardised with train statistics, target (N,) int64.
    """
    return _sk_table(
        "iris",
        "load_iris",
        "classification",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
    )


def load_diabetes(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    normalize_target: bool = False,
) -> DataBundle:
    """Diabetes progression (regression): 442 samples, 10 features.

    Returns inputs (N, 10) float32 standardised with train statistics, target (N, 1) float32 in
    the original units (25..346) unless ``normalize_target=True``, which standardises it with
    train statistics (``info["target_normalization"]``; ``bundle.denormalize_target`` undoes it).
    """
    return _sk_table(
        "diabetes",
        "load_diabetes",
        "regression",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        normalize_target=normalize_target,
    )


def _points(
    name: str,
    maker: str,
    *,
    n_samples: int,
    noise: float,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    normalize: bool,
    **extra,
) -> DataBundle:
    if int(n_samples) < 10:
        raise DataError(f"{name}: n_samples must be >= 10; got {n_samples!r}")
    make = getattr(_sklearn_datasets(), maker)
    x, y = make(n_samples=int(n_samples), noise=float(noise), random_state=seed, **extra)
    info = {
        "in_features": 2,
        "num_classes": 2,
        "class_names": ["0", "1"],
        "source": f"sklearn.datasets.{maker}",
        "n_samples": int(n_samples),
        "noise": float(noise),
    }
    return supervised_bundle(
        name,
        "points",
        "classification",
        x.astype(np.float64),
        y.astype(np.int64),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        info=info,
    )


def load_moons(
    *,
    n_samples: int = 2000,
    noise: float = 0.1,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
) -> DataBundle:
    """Two interleaving half circles (``sklearn.datasets.make_moons``), generated by ``seed``.

    Returns inputs (N, 2) float32 (standardised with train statistics when ``normalize``),
    target (N,) int64: which moon.
    """
    return _points(
        "moons",
        "make_moons",
        n_samples=n_samples,
        noise=noise,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
    )


def load_circles(
    *,
    n_samples: int = 2000,
    noise: float = 0.05,
    factor: float = 0.5,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
) -> DataBundle:
    """Two concentric circles (``sklearn.datasets.make_circles``), generated by ``seed``.

    Returns inputs (N, 2) float32 (standardised with train statistics when ``normalize``),
    target (N,) int64: inner or outer ring.
    """
    return _points(
        "circles",
        "make_circles",
        n_samples=n_samples,
        noise=noise,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        factor=float(factor),
    )
