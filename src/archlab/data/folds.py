"""K-fold cross-validation folds of a bundle's training split.

Each fold is a new :class:`DataBundle` whose ``train`` is the bundle's training split minus one
part and whose ``val`` is that part; the test split is the bundle's, the same samples in every
fold. Every training sample is in exactly one fold's validation part, so the K validation parts
partition the training split and no sample is validated in two folds.

- Stratified (classification, default): each class is shuffled by ``seed`` and dealt round-robin
  across the folds, so every fold holds ``floor`` or ``ceil`` of ``count / k`` of each class
  (scikit-learn's StratifiedKFold gives the same guarantee).
- Grouped (``groups``: one id per training sample, e.g. a subject or a play): whole groups go to
  one fold, so no group is on both sides of a fold. Groups are shuffled by ``seed`` and placed
  largest first into the fold with fewest samples (greedy balancing, as GroupKFold).
- The bundle's own val split is not used by the folds (pass it to training separately if wanted);
  a fold records what it is in ``info["fold"]``.

Normalisation: a loader fitted its statistics on the whole training split, which includes each
fold's validation part. ``normalize="refit"`` (default) refits them on the fold's training part
(exactly: standardisation composes, so standardising the normalised data again equals
standardising the raw data with the fold-train statistics) and updates ``info["normalization"]``;
columns the loader left unnormalised (mean 0, std 1, e.g. categorical ids) stay as they are.
``normalize="keep"`` reuses the bundle's statistics, a mild unsupervised leak of the validation
part's mean and std, recorded in ``info["fold"]["normalization"]``. Layouts the refit cannot map
(statistics per channel on a ``flat`` layout) fall back to ``keep`` and say so.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.errors import DataError


def fold_indices(
    n: int,
    k: int,
    *,
    seed: int = 0,
    labels: Sequence[int] | np.ndarray | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> list[np.ndarray]:
    """The K validation parts (sorted index arrays) of ``n`` samples; together they are 0..n-1.

    Args:
        labels: class per sample, to stratify; ignored when ``groups`` is given.
        groups: group id per sample; whole groups go to one part.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 2:
        raise DataError(f"k must be an integer >= 2; got {k!r}")
    if n < k:
        raise DataError(f"{k} folds need at least {k} training samples; have {n}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(k)]
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise DataError(f"groups must give one id per training sample ({n}); got {len(groups)}")
        ids = np.unique(groups)
        if len(ids) < k:
            raise DataError(f"{k} grouped folds need at least {k} groups; have {len(ids)}")
        ids = ids[rng.permutation(len(ids))]
        members = [np.flatnonzero(groups == g) for g in ids]
        order = sorted(range(len(ids)), key=lambda i: -len(members[i]))  # stable: ties keep the shuffle
        for i in order:
            target = min(range(k), key=lambda f: len(parts[f]))
            parts[target].extend(members[i].tolist())
    elif labels is not None:
        labels = np.asarray(labels)
        if len(labels) != n:
            raise DataError(f"labels must give one class per training sample ({n}); got {len(labels)}")
        offset = 0
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            idx = idx[rng.permutation(len(idx))]
            # Deal round-robin, continuing where the last class stopped so fold sizes stay even too.
            for j, i in enumerate(idx):
                parts[(offset + j) % k].append(int(i))
            offset = (offset + len(idx)) % k
    else:
        perm = rng.permutation(n)
        for j, i in enumerate(perm):
            parts[j % k].append(int(i))
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def kfold(
    bundle: DataBundle,
    k: int,
    *,
    seed: int,
    stratify: bool = True,
    groups: Sequence[Any] | None = None,
    normalize: str = "refit",
) -> list[DataBundle]:
    """K fold bundles of ``bundle``'s training split (see the module docstring for the rules).

    Args:
        bundle: a bundle with an indexable training split.
        k: number of folds (>= 2).
        seed: shuffles samples (or groups) before they are dealt to folds; same seed, same folds.
        stratify: keep class proportions per fold (classification with integer targets only).
        groups: one id per training sample; whole groups go to one fold (wins over ``stratify``).
        normalize: ``"refit"`` statistics on each fold's training part, or ``"keep"`` the bundle's.

    Raises:
        DataError: whole-graph data, too few samples or groups, a groups length mismatch, a bad option.
    """
    if not bundle.train.indexable:
        raise DataError(f"{bundle.name}: a whole-graph dataset cannot be split into folds by sample")
    if normalize not in ("refit", "keep"):
        raise DataError(f"normalize must be 'refit' or 'keep'; got {normalize!r}")
    n = len(bundle.train)
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
    parts = fold_indices(n, k, seed=seed, labels=labels, groups=groups)
    folds = []
    for i, val_idx in enumerate(parts):
        mask = np.ones(n, dtype=bool)
        mask[val_idx] = False
        train_idx = np.flatnonzero(mask)
        train = bundle.train.take(torch.from_numpy(train_idx))
        val = bundle.train.take(torch.from_numpy(val_idx))
        test = bundle.test
        info = copy.deepcopy(bundle.info)
        how = "keep"
        if normalize == "refit" and info.get("normalization"):
            refit = _refit(train, info["normalization"], info.get("layout"))
            if refit is not None:
                shift, scale, info["normalization"] = refit
                train, val = _affine(train, shift, scale), _affine(val, shift, scale)
                test = None if test is None else _affine(test, shift, scale)
                how = "refit"
        info["fold"] = {
            "index": i,
            "k": k,
            "seed": seed,
            "stratified": labels is not None and groups is None,
            "grouped": groups is not None,
            "val_indices": val_idx.tolist(),  # train: the rest
            "normalization": (
                "refit on this fold's training part"
                if how == "refit"
                else "the bundle's train statistics (include this fold's val part)"
                if info.get("normalization")
                else "none"
            ),
        }
        info["split_sizes"] = {"train": len(train), "val": len(val), "test": 0 if test is None else len(test)}
        folds.append(
            DataBundle(
                name=bundle.name, modality=bundle.modality, task=bundle.task, train=train, val=val, test=test, info=info
            )
        )
    return folds


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


def _affine(split: Split, shift: torch.Tensor, scale: torch.Tensor) -> Split:
    x = split.inputs[0]
    return Split(
        inputs=(((x - shift.to(x.device)) / scale.to(x.device)), *split.inputs[1:]),
        target=split.target,
        mask=split.mask,
    )
