"""K-fold cross-validation folds of a bundle's training split: shuffled, or forward-chaining in time.

Each fold is a new :class:`DataBundle` whose ``train`` and ``val`` are parts of the bundle's
training split; the test split is the bundle's, the same samples in every fold. A fold records
what it is in ``info["fold"]``. Fold assignment is scikit-learn's splitters, seeded by ``seed``:

- **shuffled** (independent samples): every training sample is in exactly one fold's validation
  part, the rest trains. Stratified (classification with integer targets, default) by
  ``StratifiedKFold``; grouped (``groups``: one id per training sample, e.g. a subject or a play,
  whole groups on one side of every fold) by ``GroupKFold``; both at once by
  ``StratifiedGroupKFold``, which keeps the groups whole and the class proportions as close as
  the groups allow.
- **forward** (time-ordered samples: forecasting windows, language-model windows): forward
  chaining, ``TimeSeriesSplit``. Fold i trains on the first blocks and validates on the next one,
  so a model never trains on the future of what it is validated on; the first block is never
  validated. Consecutive windows overlap, so ``gap`` samples are dropped between the training
  part and the validation block: :func:`window_gap` of a bundle is the number that keeps every
  validation window's span (inputs and targets) disjoint from every training window's.

``split="auto"`` (default) picks forward for time-ordered data (:func:`time_ordered`) and
shuffled otherwise; asking for shuffled folds of time-ordered data is a :class:`ConfigError`,
since their overlapping windows would sit on both sides of every fold.

Normalisation: a loader fitted its statistics on the whole training split, which includes each
fold's validation part. ``normalize="refit"`` (default) refits them on the fold's training part
(exactly: standardisation composes, so standardising the normalised data again equals
standardising the raw data with the fold-train statistics) and updates ``info["normalization"]``
(and ``info["target_normalization"]`` of a forecasting series, whose target shares the inputs'
scale); columns the loader left unnormalised (mean 0, std 1, e.g. categorical ids) stay as they
are. ``normalize="keep"`` reuses the bundle's statistics, a mild unsupervised leak of the
validation part's mean and std, recorded in ``info["fold"]["normalization"]``. Layouts the refit
cannot map (statistics per channel on a ``flat`` layout) fall back to ``keep`` and say so.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, DataError, require

log = logging.getLogger("archlab.data")

#: the ``split`` values :func:`kfold` takes
SPLITS = ("auto", "shuffled", "forward")
#: tasks whose samples are windows of one ordered stream
TIME_ORDERED_TASKS = ("forecasting", "language_modeling")


def _model_selection():
    return require("sklearn.model_selection", "data", "cross-validation folds")


def _check_k(n: int, k: Any) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 2:
        raise DataError(f"k must be an integer >= 2; got {k!r}")
    if n < k:
        raise DataError(f"{k} folds need at least {k} training samples; have {n}")


def fold_indices(
    n: int,
    k: int,
    *,
    seed: int = 0,
    labels: Sequence[int] | np.ndarray | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> list[np.ndarray]:
    """The K validation parts (sorted index arrays) of ``n`` shuffled samples; together they are 0..n-1.

    Args:
        seed: the splitter's ``random_state``.
        labels: class per sample, to stratify (``StratifiedKFold``, or ``StratifiedGroupKFold``
            with ``groups``).
        groups: group id per sample; whole groups go to one part (``GroupKFold``).
    """
    _check_k(n, k)
    ms = _model_selection()
    y = None if labels is None else np.asarray(labels)
    g = None if groups is None else np.asarray(groups)
    if y is not None and len(y) != n:
        raise DataError(f"labels must give one class per training sample ({n}); got {len(y)}")
    if g is not None:
        if len(g) != n:
            raise DataError(f"groups must give one id per training sample ({n}); got {len(g)}")
        if len(np.unique(g)) < k:
            raise DataError(f"{k} grouped folds need at least {k} groups; have {len(np.unique(g))}")
    if g is not None and y is not None:
        splitter = ms.StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    elif g is not None:
        splitter = ms.GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    elif y is not None:
        splitter = ms.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = ms.KFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parts = [np.sort(val) for _, val in splitter.split(np.zeros(n), y, g)]
        except ValueError as exc:  # e.g. every class smaller than k
            raise DataError(
                f"{k} {type(splitter).__name__} folds of {n} samples: {exc}; use fewer folds"
                + (" or stratify=False" if y is not None else "")
            ) from exc
    for w in caught:  # e.g. a class with fewer members than folds: said once, in the log
        log.warning("folds: %s", w.message)
    return [p.astype(np.int64) for p in parts]


def forward_chaining_indices(n: int, k: int, *, gap: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """K forward-chaining (train, validation) index pairs of ``n`` time-ordered samples.

    ``TimeSeriesSplit(n_splits=k, gap=gap)``: the samples are cut into ``k + 1`` blocks; fold i
    trains on blocks 0..i, minus the last ``gap`` samples, and validates on block i + 1. Every
    training index is below every validation index by more than ``gap``.

    Raises:
        DataError: too few samples for k blocks of at least one sample beside the gap.
    """
    _check_k(n, k)
    if not isinstance(gap, (int, np.integer)) or gap < 0:
        raise DataError(f"gap must be an integer >= 0; got {gap!r}")
    block = n // (k + 1)
    if block < 1 or block - gap < 1:
        raise DataError(
            f"{k} forward-chaining folds of {n} time-ordered samples with a gap of {gap} leave no training "
            f"samples in the first fold (blocks of {block}); use fewer folds (at most {max(n // (gap + 1) - 1, 1)})"
        )
    splitter = _model_selection().TimeSeriesSplit(n_splits=k, gap=gap)
    return [(tr.astype(np.int64), va.astype(np.int64)) for tr, va in splitter.split(np.zeros(n))]


def time_ordered(bundle: DataBundle) -> bool:
    """Whether the bundle's samples are windows of one ordered stream (forecasting, language modelling)."""
    return bundle.task in TIME_ORDERED_TASKS or bool(bundle.info.get("time_ordered"))


def window_gap(bundle: DataBundle) -> int:
    """Samples to drop between a training part and the validation block after it, so no two windows overlap.

    Sample i of a forecasting bundle reads points ``[t - window, t + horizon)`` with ``t``
    advancing by 1, so samples less than ``window + horizon`` apart share points: the gap is
    ``window + horizon - 1``. A language-model window spans ``block_size + 1`` tokens and starts
    every ``stride`` tokens: ``ceil((block_size + 1) / stride) - 1``. Anything else: 0.
    """
    info = bundle.info
    if "window" in info and "horizon" in info:
        return int(info["window"]) + int(info["horizon"]) - 1
    if "block_size" in info and "stride" in info:
        return math.ceil((int(info["block_size"]) + 1) / max(int(info["stride"]), 1)) - 1
    return 0


def _resolve_split(bundle: DataBundle, split: str, groups: Any) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    ordered = time_ordered(bundle)
    if split == "shuffled" and ordered:
        raise ConfigError(
            f"{bundle.name} is time-ordered ({bundle.task}): shuffled folds would put overlapping windows on both "
            "sides of every fold; use forward-chaining folds (split='forward', CLI --cv-split forward, or the default auto)"
        )
    if split == "auto":
        split = "forward" if ordered else "shuffled"
        if ordered:
            log.info("%s is time-ordered (%s): forward-chaining folds with a gap", bundle.name, bundle.task)
    if split == "forward" and groups is not None:
        raise ConfigError("forward-chaining folds follow time, not groups; pass groups with split='shuffled'")
    return split


def fold_plan(
    bundle: DataBundle,
    k: int,
    *,
    seed: int = 0,
    stratify: bool = True,
    groups: Sequence[Any] | None = None,
    split: str = "auto",
) -> tuple[str, int, bool, list[tuple[np.ndarray, np.ndarray]]]:
    """(split used, gap, stratified, (train, val) index pairs) of ``bundle``'s training split; see :func:`kfold`."""
    if not bundle.train.indexable:
        raise DataError(f"{bundle.name}: a whole-graph dataset cannot be split into folds by sample")
    split = _resolve_split(bundle, split, groups)
    n = len(bundle.train)
    if split == "forward":
        gap = window_gap(bundle)
        return split, gap, False, forward_chaining_indices(n, k, gap=gap)
    target = bundle.train.target
    labels = None
    if (
        stratify
        and bundle.task == "classification"
        and target is not None
        and target.ndim == 1
        and not torch.is_floating_point(target)
    ):
        labels = target.cpu().numpy()
    pairs = []
    for val_idx in fold_indices(n, k, seed=seed, labels=labels, groups=groups):
        mask = np.ones(n, dtype=bool)
        mask[val_idx] = False
        pairs.append((np.flatnonzero(mask), val_idx))
    return split, 0, labels is not None, pairs


def series_folds(bundle: DataBundle, k: int = 5, *, normalize: str = "refit") -> list[DataBundle]:
    """Forward-chaining folds of a time-ordered bundle (forecasting series, language-model windows).

    The same as ``kfold(bundle, k, seed=0, split="forward", normalize=normalize)``: fold i trains
    on the past and validates on the next block, :func:`window_gap` samples apart.
    """
    return kfold(bundle, k, seed=0, split="forward", normalize=normalize)


def kfold(
    bundle: DataBundle,
    k: int,
    *,
    seed: int,
    stratify: bool = True,
    groups: Sequence[Any] | None = None,
    normalize: str = "refit",
    split: str = "auto",
) -> list[DataBundle]:
    """K fold bundles of ``bundle``'s training split (see the module docstring for the rules).

    Args:
        bundle: a bundle with an indexable training split.
        k: number of folds (>= 2).
        seed: the shuffled splitters' ``random_state``; same seed, same folds (forward folds have no seed).
        stratify: keep class proportions per fold (classification with integer targets only).
        groups: one id per training sample; whole groups go to one fold (stratified too when
            ``stratify`` applies).
        normalize: ``"refit"`` statistics on each fold's training part, or ``"keep"`` the bundle's.
        split: ``"auto"`` (forward for time-ordered data, else shuffled), ``"shuffled"`` or ``"forward"``.

    Raises:
        DataError: whole-graph data, too few samples or groups, a groups length mismatch, a bad option.
        ConfigError: shuffled folds of time-ordered data, groups with forward folds, an unknown ``split``.
    """
    if normalize not in ("refit", "keep"):
        raise DataError(f"normalize must be 'refit' or 'keep'; got {normalize!r}")
    split, gap, stratified, pairs = fold_plan(bundle, k, seed=seed, stratify=stratify, groups=groups, split=split)
    fold_info = {
        "k": k,
        "seed": seed,
        "split": split,
        "gap": gap,
        "stratified": stratified,
        "grouped": groups is not None,
    }
    return [_fold_bundle(bundle, tr, va, dict(fold_info, index=i), normalize) for i, (tr, va) in enumerate(pairs)]


def _fold_bundle(
    bundle: DataBundle, train_idx: np.ndarray, val_idx: np.ndarray, fold_info: dict[str, Any], normalize: str
) -> DataBundle:
    train = bundle.train.take(torch.from_numpy(train_idx))
    val = bundle.train.take(torch.from_numpy(val_idx))
    test = bundle.test
    info = copy.deepcopy(bundle.info)
    how = "keep"
    if normalize == "refit" and info.get("normalization"):
        refit = _refit(train, info["normalization"], info.get("layout"))
        if refit is not None:
            shift, scale, new = refit
            with_target = _target_shares_scale(info)
            train, val = _affine(train, shift, scale, with_target), _affine(val, shift, scale, with_target)
            test = None if test is None else _affine(test, shift, scale, with_target)
            info["normalization"] = new
            if with_target:
                info["target_normalization"] = dict(new, over="target")
            how = "refit"
    info["fold"] = {
        **fold_info,
        "val_indices": val_idx.tolist(),
        # shuffled folds train on the rest; forward folds on a prefix of the training split
        "train_end": int(train_idx[-1]) + 1 if fold_info["split"] == "forward" else None,
        "normalization": (
            "refit on this fold's training part"
            if how == "refit"
            else "the bundle's train statistics (include this fold's val part)"
            if info.get("normalization")
            else "none"
        ),
    }
    info["split_sizes"] = {"train": len(train), "val": len(val), "test": 0 if test is None else len(test)}
    return DataBundle(
        name=bundle.name, modality=bundle.modality, task=bundle.task, train=train, val=val, test=test, info=info
    )


def _target_shares_scale(info: dict[str, Any]) -> bool:
    """A forecasting series: inputs and target standardised with the same scalar statistics."""
    norm, target = info.get("normalization") or {}, info.get("target_normalization")
    return bool(target) and norm.get("over") == "series" and target.get("mean") == norm.get("mean")


# ------------------------------------------------------------------------------ normalisation
def _stat_axes(x: torch.Tensor, over: str | None, layout: str | None) -> tuple[int, ...] | None:
    """Axes the loader's statistics were averaged over, in the current layout; None if unknown."""
    if over == "feature" and x.ndim == 2:
        return (0,)
    if over == "channel" and x.ndim >= 3 and layout in (None, "channels"):
        return (0, *range(2, x.ndim))  # (N, C, ...) per channel
    if over == "channel" and x.ndim == 3 and layout == "sequence":
        return (0, 1)  # (N, L, C) per channel
    if over in ("series", "all"):
        return tuple(range(x.ndim))
    return None


def _refit(train: Split, stats: dict[str, Any], layout: str | None):
    """(shift, scale, new stats) standardising ``train`` again, or None when it cannot be mapped."""
    x = train.inputs[0]
    axes = _stat_axes(x, stats.get("over"), layout)
    if axes is None or not torch.is_floating_point(x):
        return None
    xd = x.double()
    shift = xd.mean(dim=axes, keepdim=True)
    scale = xd.std(dim=axes, keepdim=True, unbiased=False)
    scale = torch.where(scale < 1e-12, torch.ones_like(scale), scale)
    old_mean = torch.tensor(stats["mean"], dtype=torch.float64)
    old_std = torch.tensor(stats["std"], dtype=torch.float64)
    flat_shift, flat_scale = shift.reshape(-1), scale.reshape(-1)
    if flat_shift.numel() != old_mean.numel():
        return None
    # Columns the loader did not normalise (mean 0, std 1: categorical ids) stay unnormalised.
    untouched = (old_mean == 0) & (old_std == 1) if old_mean.numel() > 1 else torch.zeros(1, dtype=torch.bool)
    flat_shift = torch.where(untouched, torch.zeros_like(flat_shift), flat_shift)
    flat_scale = torch.where(untouched, torch.ones_like(flat_scale), flat_scale)
    shift, scale = flat_shift.reshape(shift.shape), flat_scale.reshape(scale.shape)
    # x_raw = x * s + m; new = (x - a) / b  ==  (x_raw - (m + a s)) / (s b)
    new = dict(stats, mean=(old_mean + flat_shift * old_std).tolist(), std=(old_std * flat_scale).tolist())
    return shift.float(), scale.float(), new


def _affine(split: Split, shift: torch.Tensor, scale: torch.Tensor, with_target: bool = False) -> Split:
    x = split.inputs[0]
    target = split.target
    if with_target and target is not None:  # a scalar shift and scale (statistics over the series)
        target = (target - shift.reshape(()).to(target.device)) / scale.reshape(()).to(target.device)
    return Split(
        inputs=(((x - shift.to(x.device)) / scale.to(x.device)), *split.inputs[1:]),
        target=target,
        mask=split.mask,
    )
