"""Pictures a task makes, as data: what to draw, never how.

A task's picture hooks (:meth:`~archlab.tasks.base.Task.on_evaluate`,
:meth:`~archlab.tasks.base.Task.on_fit_end`) return ``{name: Picture}``; the caller decides
where each goes and :func:`archlab.report.plots.draw` renders it with the package's one
matplotlib style. Nothing here imports matplotlib, so tasks stay importable without it.
Tensors are detached and moved to the CPU when a picture is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from archlab.errors import ShapeError


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu()


@dataclass
class ImageGrid:
    """A grid of images.

    Attributes:
        images: (N, C, H, W) with values in [0, 1]; C = 1 (grey) or 3 (RGB).
        titles: one caption per image (e.g. the class a conditional model was asked for), or None.
        title: a caption over the whole grid.
        cols: images per row (default: a square-ish grid).
    """

    images: torch.Tensor
    titles: Sequence[str] | None = None
    title: str | None = None
    cols: int | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] not in (1, 3):
            raise ShapeError(f"ImageGrid expects images (N, 1 or 3, H, W); got {tuple(self.images.shape)}")
        self.images = _cpu(self.images)


@dataclass
class PointsPlot:
    """2-D samples beside the real data and, for a density model, its density map.

    Attributes:
        samples: (N, 2) generated points.
        real: (M, 2) data points drawn beside them, or None.
        log_prob: ``(K, 2) -> (K,)`` log-density on CPU points (a flow's ``log_prob``), or None.
        title: a caption over the figure.
    """

    samples: torch.Tensor
    real: torch.Tensor | None = None
    log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[1] != 2:
            raise ShapeError(f"PointsPlot expects samples (N, 2); got {tuple(self.samples.shape)}")
        if self.real is not None and (self.real.ndim != 2 or self.real.shape[1] != 2):
            raise ShapeError(f"PointsPlot expects real (M, 2); got {tuple(self.real.shape)}")
        self.samples = _cpu(self.samples)
        self.real = _cpu(self.real) if self.real is not None else None


@dataclass
class ForecastPlot:
    """Actual values beside a model's forecasts and the seasonal-naive ones (each forecaster's MAE
    goes in the legend).

    Attributes:
        actual: (N,) held-out values, in the data's units.
        predicted: (N,) the model's forecasts of the same steps.
        naive: (N,) the seasonal-naive forecasts of the same steps.
        title: the figure's title.
    """

    actual: torch.Tensor
    predicted: torch.Tensor
    naive: torch.Tensor
    title: str = "forecast"

    def __post_init__(self) -> None:
        if not (self.actual.shape == self.predicted.shape == self.naive.shape and self.actual.ndim == 1):
            raise ShapeError(
                f"ForecastPlot expects three (N,) series; got {tuple(self.actual.shape)}, "
                f"{tuple(self.predicted.shape)}, {tuple(self.naive.shape)}"
            )
        self.actual, self.predicted, self.naive = _cpu(self.actual), _cpu(self.predicted), _cpu(self.naive)


Picture = ImageGrid | PointsPlot | ForecastPlot
PICTURE_TYPES: tuple[type, ...] = (ImageGrid, PointsPlot, ForecastPlot)
