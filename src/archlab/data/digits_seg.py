"""``digits_seg``: a segmentation set generated from scikit-learn's 8x8 digits.

Each sample places one upsampled handwritten digit on a larger blank canvas and adds noise;
the mask marks the digit's pixels. It exists so a U-Net worked example runs offline on real
handwriting with exact ground truth.

Generation (all by ``seed``, independent of the split fractions):

1. a source digit (8x8, ink 0..16 scaled to [0, 1]) is resized bilinearly to a random side
   ``digit_size[0]..digit_size[1]`` pixels (default 16..24, i.e. 2x-3x);
2. it is pasted at a random position of a ``canvas`` x ``canvas`` zero image (default 32);
3. the mask is the pasted digit's ink above ``threshold`` (default 0.5): with
   ``labels="digit"`` a pixel's class is ``1 + digit`` (background 0, so 11 classes:
   ``background, 0, ..., 9``) - the net must both find and recognise the digit; with
   ``labels="binary"`` it is 1 for ink (2 classes: ``background, digit``);
4. the input is the clean canvas plus Gaussian noise of std ``noise`` (default 0.3), clipped
   to [0, 1]; the mask is computed from the clean canvas.

``copies`` samples (default 2) are drawn per source digit, and splits are made over source
digits (stratified by digit class), so no handwritten digit appears in two splits.

Returns inputs (N, 1, canvas, canvas) float32 (standardised with the train split's channel mean
and std unless ``normalize=False``) and target (N, canvas, canvas) int64 class ids.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from archlab.data.base import DataBundle, Split
from archlab.data.splits import fit_standardizer, split_indices, stats_dict
from archlab.errors import DataError, require

DIGIT_CLASS_NAMES = ["background"] + [str(i) for i in range(10)]
BINARY_CLASS_NAMES = ["background", "digit"]


def _check_options(
    canvas: int, copies: int, noise: float, threshold: float, digit_size: tuple[int, int], labels: str
) -> tuple[int, int]:
    if labels not in ("digit", "binary"):
        raise DataError(f"digits_seg: labels must be 'digit' or 'binary'; got {labels!r}")
    try:
        lo, hi = (int(v) for v in digit_size)
    except (TypeError, ValueError):
        raise DataError(f"digits_seg: digit_size must be (min, max) pixels; got {digit_size!r}") from None
    if not 8 <= lo <= hi <= canvas:
        raise DataError(f"digits_seg: digit_size must satisfy 8 <= min <= max <= canvas={canvas}; got ({lo}, {hi})")
    if int(copies) < 1:
        raise DataError(f"digits_seg: copies must be >= 1; got {copies!r}")
    if not (noise >= 0 and np.isfinite(noise)):
        raise DataError(f"digits_seg: noise must be a finite std >= 0; got {noise!r}")
    if not 0 < threshold < 1:
        raise DataError(f"digits_seg: threshold must be in (0, 1); got {threshold!r}")
    return lo, hi


def make_digits_seg(
    images: np.ndarray,
    digits: np.ndarray,
    *,
    canvas: int = 32,
    copies: int = 2,
    noise: float = 0.3,
    threshold: float = 0.5,
    digit_size: tuple[int, int] = (16, 24),
    labels: Literal["digit", "binary"] = "digit",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate the samples from (N, 8, 8) digit images in [0, 1] with labels ``digits``.

    Returns (x, mask, source, clean): x (N*copies, 1, canvas, canvas) float64 noisy inputs in
    [0, 1]; mask (N*copies, canvas, canvas) int64 class ids; source (N*copies,) the index of
    the source digit of each sample; clean (N*copies, canvas, canvas) the noise-free canvas.
    """
    lo, hi = _check_options(canvas, copies, noise, threshold, digit_size, labels)
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(len(images)), int(copies))
    sizes = rng.integers(lo, hi + 1, size=len(src))
    clean = np.zeros((len(src), canvas, canvas), dtype=np.float64)
    base = torch.from_numpy(np.asarray(images, dtype=np.float64))[:, None]  # (N, 8, 8) -> (N, 1, 8, 8)
    for s in np.unique(sizes):
        rows = np.flatnonzero(sizes == s)
        # (n, 1, 8, 8) -> (n, s, s): bilinear resize of each sample's source digit
        up = F.interpolate(base[src[rows]], size=(int(s), int(s)), mode="bilinear", align_corners=False)
        up = up[:, 0].clamp(0, 1).numpy()
        tops = rng.integers(0, canvas - s + 1, size=len(rows))
        lefts = rng.integers(0, canvas - s + 1, size=len(rows))
        for r, img, t, left in zip(rows, up, tops, lefts):
            clean[r, t : t + s, left : left + s] = img
    ink = clean > threshold
    cls = (np.asarray(digits, dtype=np.int64)[src] + 1) if labels == "digit" else np.ones(len(src), np.int64)
    mask = np.where(ink, cls[:, None, None], 0).astype(np.int64)
    x = np.clip(clean + rng.normal(0.0, float(noise), size=clean.shape), 0.0, 1.0)[:, None]
    return x, mask, src, clean


def load_digits_seg(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    canvas: int = 32,
    copies: int = 2,
    noise: float = 0.3,
    threshold: float = 0.5,
    digit_size: tuple[int, int] = (16, 24),
    labels: Literal["digit", "binary"] = "digit",
) -> DataBundle:
    """scikit-learn digits pasted on a noisy canvas, with per-pixel masks (see the module doc).

    Returns inputs (N, 1, canvas, canvas) float32 and target (N, canvas, canvas) int64 in
    ``0..K-1`` (K = 11 for ``labels="digit"``, 2 for ``"binary"``); ``info`` has ``in_channels``,
    ``image_size``, ``num_classes``, ``class_names`` and ``class_pixel_fraction`` (train).

    Raises:
        DataError: an option out of range (named with its value).
    """
    datasets = require("sklearn.datasets", "data", "the digits_seg dataset")
    raw = datasets.load_digits()
    images = np.asarray(raw.images, dtype=np.float64) / 16.0
    digits = np.asarray(raw.target, dtype=np.int64)
    x, mask, src, _ = make_digits_seg(
        images,
        digits,
        canvas=canvas,
        copies=copies,
        noise=noise,
        threshold=threshold,
        digit_size=digit_size,
        labels=labels,
        seed=seed,
    )
    rows = _rows_by_split(src, digits, val_fraction, test_fraction, seed)
    names = DIGIT_CLASS_NAMES if labels == "digit" else BINARY_CLASS_NAMES
    info = _generation_info(canvas, copies, noise, threshold, digit_size, labels, names)
    if normalize:
        mean, std = fit_standardizer(x[rows["train"]], (0, 2, 3))
        x = (x - mean) / std
        info["normalization"] = stats_dict(mean, std, "channel")
    info["class_pixel_fraction"] = _pixel_fractions(mask[rows["train"]], len(names))
    splits = _splits(x, mask, rows)
    info["input_shape"] = [1, int(canvas), int(canvas)]
    info["split_sizes"] = {k: (0 if v is None else len(v)) for k, v in splits.items()}
    info["seed"] = seed
    return DataBundle(
        name="digits_seg",
        modality="image",
        task="segmentation",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info=info,
    )


def _rows_by_split(
    src: np.ndarray, digits: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """The sample rows of each split: the split is drawn over the source digits (stratified by
    class), so the copies of one digit never straddle train and test."""
    tr, va, te = split_indices(len(digits), val_fraction, test_fraction, seed, digits)
    return {k: np.flatnonzero(np.isin(src, idx)) for k, idx in (("train", tr), ("val", va), ("test", te))}


def _generation_info(
    canvas: int,
    copies: int,
    noise: float,
    threshold: float,
    digit_size: tuple[int, int],
    labels: str,
    names: list[str],
) -> dict:
    """The bundle's ``info``: image layout, classes, source and the generation options."""
    return {
        "in_channels": 1,
        "image_size": [int(canvas), int(canvas)],
        "num_classes": len(names),
        "class_names": list(names),
        "source": "sklearn.datasets.load_digits, pasted on a noisy canvas",
        "generation": {
            "canvas": int(canvas),
            "copies": int(copies),
            "noise": float(noise),
            "threshold": float(threshold),
            "digit_size": [int(v) for v in digit_size],
            "labels": labels,
        },
    }


def _pixel_fractions(mask: np.ndarray, num_classes: int) -> list[float]:
    """The share of pixels of each class in ``mask`` (5 decimals)."""
    counts = np.bincount(mask.ravel(), minlength=num_classes)
    return [round(float(c) / max(int(counts.sum()), 1), 5) for c in counts]


def _splits(x: np.ndarray, mask: np.ndarray, rows: dict[str, np.ndarray]) -> dict[str, Split | None]:
    """Float32 inputs and int64 masks per split; an empty val or test split is None."""
    splits: dict[str, Split | None] = {}
    for key, r in rows.items():
        splits[key] = (
            None
            if (len(r) == 0 and key != "train")
            else Split(
                inputs=(torch.from_numpy(np.ascontiguousarray(x[r], dtype=np.float32)),),
                target=torch.from_numpy(np.ascontiguousarray(mask[r], dtype=np.int64)),
            )
        )
    return splits
