"""Seeded splits, normalisation fitted on train only, sliding windows, and bundle builders.

Every loader ends here, so the rules hold for every dataset:

- Random splits come from ``numpy.random.default_rng(seed)``: the same seed gives the same split,
  a different seed a different one. Classification splits are stratified by class.
- Ordered data (time series, text) is split chronologically (train, then val, then test) so no
  window of the future leaks into training; the seed does not move those boundaries.
- Normalisation statistics are computed on the train split only and applied to every split; they
  are returned as plain lists in ``info["normalization"]`` so a run can save them as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.errors import DataError


def check_fraction(name: str, value: float, allow_zero: bool = True) -> float:
    """Validate a split fraction option, naming it in the error."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number in [0, 1); got {value!r}") from None
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise DataError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1); got {value!r}")
    return value


def split_indices(
    n: int,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train / val / test indices of ``n`` samples, stratified by ``labels`` if given.

    Each class contributes ``round(fraction * count)`` samples to val and test (at least one
    when the fraction is positive and the class has three or more samples), so small classes
    are still represented. Indices within each split are sorted.
    """
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise DataError(f"val_fraction + test_fraction must be < 1; got {val_fraction} + {test_fraction}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    tr, va, te = [], [], []
    for idx in groups:
        idx = idx[rng.permutation(len(idx))]
        k = len(idx)
        n_te = _part(k, test_fraction)
        n_va = _part(k, val_fraction)
        if n_te + n_va >= k:  # tiny class: keep at least one sample for training
            n_te, n_va = min(n_te, max(k - 1, 0)), min(n_va, max(k - 1 - n_te, 0))
        te.append(idx[:n_te])
        va.append(idx[n_te : n_te + n_va])
        tr.append(idx[n_te + n_va :])
    cat = lambda parts: np.sort(np.concatenate(parts)).astype(np.int64)  # noqa: E731
    return cat(tr), cat(va), cat(te)


def _part(k: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    m = int(round(fraction * k))
    return max(m, 1) if k >= 3 else m


def chronological_bounds(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """End indices (train_end, val_end) of a chronological split of ``n`` ordered items."""
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise DataError(f"val_fraction + test_fraction must be < 1; got {val_fraction} + {test_fraction}")
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return n - n_val - n_test, n - n_test


# ----------------------------------------------------------------------------- normalisation
def fit_standardizer(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of train data ``x`` over ``axes`` (kept as size-1 dims for broadcasting).

    A constant feature (std 0, e.g. a border pixel of ``digits``) gets std 1, so it maps to 0
    instead of dividing by zero.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-12, 1.0, std)
    return mean, std


def stats_dict(mean: np.ndarray, std: np.ndarray, over: str) -> dict[str, Any]:
    """``info["normalization"]``: plain lists, JSON-ready, with where they apply."""
    return {"mean": [float(v) for v in np.ravel(mean)], "std": [float(v) for v in np.ravel(std)], "over": over}


# -------------------------------------------------------------------------------- windows
def sliding_windows(
    series: np.ndarray, window: int, horizon: int, starts: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forecasting windows of a 1-D series.

    For each ``t`` in ``starts`` (the index of the first value to predict), the input is
    ``series[t - window : t]`` and the target ``series[t : t + horizon]``.

    Returns:
        inputs (N, window, 1) and targets (N, horizon), as float32 arrays.
    """
    series = np.asarray(series, dtype=np.float32)
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) == 0:
        return np.zeros((0, window, 1), np.float32), np.zeros((0, horizon), np.float32)
    if starts.min() < window or starts.max() + horizon > len(series):
        raise DataError(
            f"window starts must lie in [{window}, {len(series) - horizon}]; got [{starts.min()}, {starts.max()}]"
        )
    view = np.lib.stride_tricks.sliding_window_view(series, window + horizon)
    rows = view[starts - window]
    return rows[:, :window, None].copy(), rows[:, window:].copy()


# -------------------------------------------------------------------------- bundle builders
def _tensor(x: np.ndarray, kind: str) -> torch.Tensor:
    if kind == "long":
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def check_finite(x: np.ndarray, what: str) -> None:
    """Raise DataError naming ``what`` and the first sample index holding NaN or inf."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise DataError(
            f"{what} holds {int(bad.sum())} non-finite value(s) (NaN or inf); the first is at "
            f"sample {int(first[0])}, position {tuple(int(i) for i in first[1:])}"
        )


def supervised_bundle(
    name: str,
    modality: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    norm_axes: tuple[int, ...] = (0,),
    norm_over: str = "feature",
    skip_norm: Sequence[int] = (),
    normalize_target: bool = False,
    fixed_test: tuple[np.ndarray, np.ndarray | None] | None = None,
    info: dict[str, Any] | None = None,
) -> DataBundle:
    """Split, normalise (train statistics only) and pack arrays into a DataBundle.

    Args:
        x: (N, ...) inputs; y: (N,) integer labels, or (N,) / (N, k) float targets, or None.
        norm_axes: axes the statistics are averaged over; e.g. ``(0,)`` per feature for
            (N, F) tabular data, ``(0, 2, 3)`` per channel for (N, C, H, W) images.
        skip_norm: feature columns left as they are (categorical ids).
        normalize_target: standardise a regression target too (``info["target_normalization"]``).
        fixed_test: a given (x_test, y_test); val is then carved out of train by ``seed`` and
            ``test_fraction`` is ignored.
    """
    info = dict(info or {})
    classify = task == "classification"
    labels = y if (classify and y is not None) else None
    if fixed_test is None:
        tr, va, te = split_indices(len(x), val_fraction, test_fraction, seed, labels)
        parts = {"train": (x[tr], _take(y, tr)), "val": (x[va], _take(y, va)), "test": (x[te], _take(y, te))}
    else:
        tr, va, _ = split_indices(len(x), val_fraction, 0.0, seed, labels)
        parts = {"train": (x[tr], _take(y, tr)), "val": (x[va], _take(y, va)), "test": fixed_test}
    if normalize:
        mean, std = fit_standardizer(parts["train"][0], norm_axes)
        if skip_norm:
            mean[..., list(skip_norm)] = 0.0
            std[..., list(skip_norm)] = 1.0
        parts = {k: ((v[0] - mean) / std, v[1]) for k, v in parts.items()}
        info["normalization"] = stats_dict(mean, std, norm_over)
    if normalize_target and y is not None and not classify:
        t_mean, t_std = fit_standardizer(
            np.asarray(parts["train"][1], np.float64).reshape(len(parts["train"][1]), -1), (0,)
        )
        parts = {
            k: (v[0], None if v[1] is None else (np.asarray(v[1], np.float64).reshape(len(v[1]), -1) - t_mean) / t_std)
            for k, v in parts.items()
        }
        info["target_normalization"] = stats_dict(t_mean, t_std, "target")
    splits = {}
    for key, (xs, ys) in parts.items():
        if len(xs) == 0 and key != "train":
            splits[key] = None
            continue
        target = None
        if ys is not None:
            ys = np.asarray(ys)
            target = _tensor(ys, "long") if classify else _tensor(ys.reshape(len(ys), -1), "float")
        splits[key] = Split(inputs=(_tensor(xs, "float"),), target=target)
    info.setdefault("input_shape", list(x.shape[1:]))
    info["split_sizes"] = {k: (0 if v is None else len(v)) for k, v in splits.items()}
    info.setdefault("seed", seed)
    return DataBundle(
        name=name,
        modality=modality,
        task=task,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info=info,
    )


def _take(y: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if y is None else y[idx]


def encode_labels(y: Sequence[Any], what: str) -> tuple[np.ndarray, list[str]]:
    """Map arbitrary labels to 0..K-1 in sorted order; returns (ids, class_names)."""
    y = np.asarray(y)
    if len(y) == 0:
        raise DataError(f"{what} has no labels")
    classes, ids = np.unique(y, return_inverse=True)
    return ids.astype(np.int64), [str(c) for c in classes]


SIGNAL_LAYOUTS = ("channels", "sequence", "flat")


def apply_layout(bundle: DataBundle, layout: str) -> DataBundle:
    """Lay out a signal dataset's inputs for the model family that will read them.

    - ``channels`` (default): (N, C, L), for 1-D CNNs, ResNet-1D and FCNs.
    - ``sequence``: (N, L, C), for RNNs, TCNs, SSMs and transformers on features per step.
    - ``flat``: (N, C * L), for MLPs.

    ``info["layout"]`` records the choice and ``info["in_features"]`` becomes what a model reads
    per sample (``flat``) or per step (``sequence``). Normalisation statistics stay per channel.
    """
    if layout not in SIGNAL_LAYOUTS:
        raise DataError(f"{bundle.name}: layout={layout!r} is not one of {', '.join(SIGNAL_LAYOUTS)}")
    x = bundle.train.inputs[0]
    if bundle.modality != "time_series" or x.ndim != 3:
        raise DataError(
            f"{bundle.name}: layout= applies to signal datasets with inputs (N, C, L); "
            f"this one is {bundle.modality} with inputs {tuple(x.shape)}"
        )
    channels, length = int(x.shape[1]), int(x.shape[2])
    if layout == "sequence":
        convert, in_features = (lambda t: t.transpose(1, 2).contiguous()), channels  # (N, C, L) -> (N, L, C)
    elif layout == "flat":
        convert, in_features = (lambda t: t.reshape(t.shape[0], -1)), channels * length  # (N, C, L) -> (N, C*L)
    else:
        convert, in_features = (lambda t: t), None
    for split in bundle.splits().values():
        split.inputs = (convert(split.inputs[0]), *split.inputs[1:])
    bundle.info["layout"] = layout
    if in_features is not None:
        bundle.info["in_features"] = in_features
    return bundle
