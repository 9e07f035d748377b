"""The task as the engine sees it: the hooks it calls and the metric a run is judged on.

The engine (:mod:`archlab.train.loop`, :mod:`archlab.train.evaluate`) is below the task
implementations (:mod:`archlab.tasks`), so the contract lives here, where it is used.
:class:`archlab.tasks.base.Task` implements it with a default for every hook.

:class:`Selection` is the one declaration of what "better" means for a task: early stopping,
the best checkpoint, cross-validation summaries and the design search all read it, so none of
them guesses a metric from its name. A baseline's figure (``val_naive_mae``, a seasonal naive
forecast's error) is never a selection metric: it does not change when the model does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import nn

Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Selection:
    """The metric a task's models are compared on, and whether lower or higher is better.

    Attributes:
        metric: the metric's name without its split prefix (``"accuracy"``, ``"mae"``, ``"loss"``).
        mode: ``"max"`` when higher is better, ``"min"`` when lower is.
    """

    metric: str
    mode: Mode

    def key(self, split: str = "val") -> str:
        """The record key on ``split``: ``val_accuracy``, ``test_mae``, ..."""
        return f"{split}_{self.metric}"

    def better(self, a: float, b: float, min_delta: float = 0.0) -> bool:
        """Whether ``a`` beats ``b`` by more than ``min_delta``."""
        return a < b - min_delta if self.mode == "min" else a > b + min_delta

    def best_index(self, values: Iterable[float | None]) -> int | None:
        """The index of the best finite value (the first on ties), or None when there is none."""
        best: tuple[int, float] | None = None
        for i, v in enumerate(values):
            if v is not None and math.isfinite(v) and (best is None or self.better(v, best[1])):
                best = (i, v)
        return None if best is None else best[0]

    def worst(self) -> float:
        """A value every finite metric beats (what a failed run scores)."""
        return math.inf if self.mode == "min" else -math.inf


#: the selection of a task that declares none: its validation loss
LOSS = Selection("loss", "min")


@runtime_checkable
class TaskProtocol(Protocol):
    """What the engine calls on a task, in the order a run meets it (see :mod:`archlab.tasks.base`)."""

    name: ClassVar[str]
    needs_target: ClassVar[bool]
    selection: ClassVar[Selection]

    def setup(self, data: Any, cfg: Any, device: torch.device) -> None: ...
    def configure_optimizers(self, model: nn.Module, cfg: Any, total_steps: int) -> tuple[list, list]: ...
    def training_step(self, model: nn.Module, batch: Any, optimizers: list, ctx: Any) -> dict[str, torch.Tensor]: ...
    def forward(self, model: nn.Module, batch: Any) -> Any: ...
    def batch_loss(self, output: Any, batch: Any) -> torch.Tensor: ...
    def make_metrics(self, device: torch.device) -> dict[str, Any]: ...
    def update_metrics(self, metrics: dict[str, Any], output: Any, batch: Any) -> None: ...
    def eval_extras(self, output: Any, batch: Any) -> dict[str, torch.Tensor]: ...
    def finish_extras(self, sums: dict[str, torch.Tensor]) -> dict[str, float]: ...
    def on_evaluate(self, model: nn.Module, step: int) -> dict[str, Any]: ...
    def on_fit_end(self, model: nn.Module, data: Any) -> dict[str, Any]: ...


def selection_of(task: Any) -> Selection:
    """The task's declared :class:`Selection` (its loss when it declares none, e.g. a plain object)."""
    sel = getattr(task, "selection", None)
    return sel if isinstance(sel, Selection) else LOSS
