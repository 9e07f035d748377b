"""How a design turns its time budget into training: the recipe, the search's share of the
seconds, the steps a run can afford, and each family's starting learning rate."""

from __future__ import annotations

from typing import Any

from torch import nn

from archlab.data.base import DataBundle
from archlab.runs.lr_range import LRRange, lr_range_test

#: the training recipe every candidate and the winner share, unless ``train`` says otherwise
RECIPE = {"lr": 3e-3}
#: fewest and most steps of one run
MIN_STEPS, MAX_STEPS = 10, 50_000
#: a family's calibration (its learning-rate sweep, then its step timing) spends at most this share
#: of one trial's seconds on each, but never less than CALIBRATION_MIN_S: a family at 8 s a step
#: on a 60-second design took 660 s to calibrate before either was bounded
CALIBRATION_SHARE, CALIBRATION_MIN_S = 0.25, 6.0
#: the starting rate of a model fitted in closed form when its sweep cannot run (the sweeps that
#: did run put MiniRocket's at 1.3e-5 to 1.4e-5 on two UCR problems)
FITTED_LR = 1e-5


def steps_for(seconds: float, per_step: float, overhead: float, runs: int = 1) -> int:
    """Steps per run so that ``runs`` runs fit in ``seconds`` (at least ``MIN_STEPS``)."""
    per_run = seconds / runs - overhead
    return int(min(MAX_STEPS, max(MIN_STEPS, per_run // per_step)))


def search_seconds(budget_s: float, share: float | None, families: int, folds: int | None) -> float:
    """The search's seconds of the budget: ``share`` of it when given; else half, or with k folds
    all but the winner's one run, which is about ``1 / (k - 1)`` of a trial of ``search_s /
    (families + 1)`` (the winner trains as its cross-validated trial did)."""
    if share is not None:
        return budget_s * share
    if not folds:
        return budget_s * 0.5
    return budget_s / (1 + 1 / ((families + 1) * (folds - 1)))


def starting_lr(model: nn.Module, bundle: DataBundle, task: Any, **sweep: Any) -> LRRange:
    """A family's starting learning rate: the rate the model declares (``recipe_lr``), else the
    range test's suggestion (``sweep``: :func:`lr_range_test`'s keywords).

    A model fitted to the data in closed form (MiniRocket's ridge head) starts at an optimum:
    when its sweep cannot run it is fine-tuned gently (:data:`FITTED_LR`), not at the recipe's
    rate, which undoes the fit.
    """
    declared = getattr(model, "recipe_lr", None)
    if declared is not None:
        return LRRange(float(declared), None, note=f"{type(model).__name__} declares its rate: {declared:g}")
    fallback = FITTED_LR if hasattr(model, "fit_to_data") else RECIPE["lr"]
    return lr_range_test(model, bundle, task, fallback=fallback, **sweep)
