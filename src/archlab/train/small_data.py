"""The small-validation rule: no checkpoint selection or early stopping on a handful of samples.

Why a threshold, and why 50. The accuracy measured on ``n`` validation samples has binomial
standard error ``sqrt(p (1 - p) / n)`` (e.g. Hastie, Tibshirani & Friedman, *ESL* 7.10; the
usual normal approximation). At ``p = 0.8``:

    n = 3   -> SE 23 points, one sample moves accuracy by 33 points
    n = 20  -> SE  9 points, one sample moves it by 5 points
    n = 50  -> SE  5.7 points, one sample moves it by 2 points

Below 50 samples a single sample moves the validation accuracy by more than 2 points and the
standard error exceeds 5 points, larger than the gaps between the epochs one would choose among:
"best on val" is then picked by noise, and so is the epoch early stopping halts at. Picking the
maximum of many noisy evaluations also biases the chosen checkpoint towards lucky ones (the
winner's curse, Cawley & Talbot 2010, "On over-fitting in model selection"). So below
:data:`MIN_VAL_FOR_SELECTION` samples archlab trains for the configured length and keeps the last
weights; select by k-fold cross-validation (:func:`archlab.runs.cv.cross_validate`) instead.

A user who sets ``restore_best`` or ``patience`` explicitly keeps them (the rule changes
defaults, not requests); the reason then says the selection rests on a small split.

This module is pure: :func:`selection_policy` decides, :func:`apply_policy` returns the config
the engine should run with. Neither logs; the caller states the reason when training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archlab.train.config import TrainConfig

#: Fewest validation samples on which archlab picks a checkpoint or stops early by default.
MIN_VAL_FOR_SELECTION = 50

#: Config fields whose meaning is "select on the validation split".
_SELECTION_FIELDS = ("restore_best", "patience")


@dataclass(frozen=True)
class Policy:
    """What to do with the validation split.

    Attributes:
        select_on_val: pick the best checkpoint / stop early on validation (False: keep the last
            weights of the configured length).
        reason: one sentence for the log and the run's data block.
        n_val: validation samples the decision was made on.
        overrides: TrainConfig fields to change (empty when nothing changes).
    """

    select_on_val: bool
    reason: str
    n_val: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``data_info.json`` / ``final_metrics.json``."""
        return {
            "select_on_val": self.select_on_val,
            "reason": self.reason,
            "n_val": self.n_val,
            "min_val_for_selection": MIN_VAL_FOR_SELECTION,
            "overrides": dict(self.overrides),
        }


def accuracy_standard_error(n: int, p: float = 0.8) -> float:
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of an accuracy measured on ``n`` samples."""
    return math.sqrt(p * (1 - p) / n) if n > 0 else float("inf")


def selection_policy(
    n_val: int, cfg: TrainConfig, *, explicit: set[str] | None = None, threshold: int = MIN_VAL_FOR_SELECTION
) -> Policy:
    """Decide whether this run may select on its validation split.

    Args:
        n_val: samples in the validation split (0 when there is none).
        cfg: the run's config.
        explicit: config fields the user set (default ``cfg.model_fields_set``). Pass the
            original set when ``cfg`` was rebuilt from a dict that holds every field, as a
            resumed run's saved config does.
        threshold: fewest samples to select on (default :data:`MIN_VAL_FOR_SELECTION`).
    """
    explicit = set(cfg.model_fields_set if explicit is None else explicit)
    wants = cfg.restore_best or cfg.patience is not None
    if n_val <= 0:
        return Policy(False, "no validation split: the last weights are kept", n_val)
    if n_val >= threshold:
        return Policy(
            wants,
            f"{n_val} validation samples (>= {threshold}): "
            + (
                "best checkpoint on " + (cfg.monitor if cfg.monitor != "auto" else "the task's selection metric")
                if wants
                else "last weights, as configured"
            ),
            n_val,
        )
    se = 100 * accuracy_standard_error(n_val)
    why = (
        f"{n_val} validation samples (< {threshold}): one sample moves accuracy by "
        f"{100 / n_val:.1f} points and its standard error is ~{se:.0f} points"
    )
    asked = sorted(
        f
        for f in _SELECTION_FIELDS
        if f in explicit
        and ((f == "restore_best" and cfg.restore_best) or (f == "patience" and cfg.patience is not None))
    )
    if asked:
        return Policy(
            True,
            f"{why}; selecting on val anyway because {', '.join(asked)} was set explicitly (consider cross-validation)",
            n_val,
        )
    overrides = {k: v for k, v in (("restore_best", False), ("patience", None)) if getattr(cfg, k) != v}
    return Policy(
        False,
        f"{why}: no best-checkpoint selection or early stopping on val, the last weights "
        "are kept (select by cross-validation instead)",
        n_val,
        overrides,
    )


def apply_policy(cfg: TrainConfig, n_val: int, *, explicit: set[str] | None = None) -> tuple[TrainConfig, Policy]:
    """``cfg`` with the policy's overrides applied, and the policy (``cfg`` itself when none)."""
    policy = selection_policy(n_val, cfg, explicit=explicit)
    if not policy.overrides:
        return cfg, policy
    return cfg.replace(**policy.overrides), policy
