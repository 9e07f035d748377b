"""What every generative task does before the network sees a batch: value range and sample shape.

The generative tasks (:mod:`~archlab.tasks.reconstruction`, :mod:`~archlab.tasks.vae`,
:mod:`~archlab.tasks.flow`, :mod:`~archlab.tasks.gan`, :mod:`~archlab.tasks.diffusion`) derive from
:class:`GenerativeTask`, so the one trainer loop trains them like any classifier.

- **value range**: a bundle's images are standardised with train statistics
  (``info["normalization"]``); a sigmoid decoder wants pixels in [0, 1] and a Tanh generator or
  a diffusion model wants [-1, 1]. ``data_range`` picks ``unit`` ([0, 1]), ``symmetric``
  ([-1, 1]) or ``standard`` (as loaded); ``auto`` chooses per task for images and ``standard``
  for every other modality (points, tables). :meth:`GenerativeTask.to_display` maps samples back.
- **shape**: a flat-vector model (``autoencoder_digits``, ``vae_digits``, ``gan_mlp``) gets
  (B, 1, 8, 8) images flattened to (B, 64), and its samples are reshaped back to images for grids.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.base import Task, TaskOptions

DataRange = Literal["auto", "unit", "symmetric", "standard"]


class GenerativeOptions(TaskOptions):
    """Options every generative task takes."""

    data_range: DataRange = "auto"


def data_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """Shape of one data sample the model consumes or generates (no batch), from its config.

    Read from ``model.data_shape`` when it has one (diffusion, flows), else from the config
    fields ``input_shape`` / ``in_features`` / ``image_size`` (+ channels) / ``out_features``.
    Reading the config (not calling ``example_input``) draws no random numbers, which keeps an
    interrupted-and-resumed run bitwise equal to an uninterrupted one.
    """
    shape = getattr(model, "data_shape", None)
    if shape:
        return tuple(int(s) for s in shape)
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    if getattr(cfg, "input_shape", None):
        return tuple(int(s) for s in cfg.input_shape)
    if getattr(cfg, "in_features", None) and not hasattr(cfg, "field_sizes"):
        return (int(cfg.in_features),)
    if getattr(cfg, "image_size", None):
        channels = getattr(cfg, "in_channels", None) or getattr(cfg, "image_channels", None) or 1
        return (int(channels), int(cfg.image_size), int(cfg.image_size))
    if getattr(cfg, "out_features", None):
        return (int(cfg.out_features),)
    return None


def num_classes_of(model: nn.Module) -> int:
    """Classes a generative model is conditioned on (``config.num_classes``); 0 = unconditional."""
    return int(getattr(getattr(model, "config", None), "num_classes", None) or 0)


def cycled_labels(model: nn.Module, n: int) -> torch.Tensor | None:
    """Labels 0, 1, ..., K-1, 0, 1, ... (n,) for sampling a class-conditional model; None if unconditional."""
    k = num_classes_of(model)
    return torch.arange(n) % k if k else None


def batch_labels(model: nn.Module, batch: Split) -> tuple[torch.Tensor, ...]:
    """``(y,)`` with the batch's class ids for a class-conditional model, ``()`` for an unconditional one."""
    k = num_classes_of(model)
    if k == 0:
        return ()
    if batch.target is None:
        raise ConfigError(
            f"a class-conditional {model.__class__.__name__} (num_classes={k}) needs labelled data; "
            "the batch has no target y"
        )
    return (batch.target.long(),)


def fit_shape(x: torch.Tensor, shape: tuple[int, ...] | None, what: str) -> torch.Tensor:
    """Reshape (B, ...) data to (B, *shape) when only the layout differs (flatten / unflatten)."""
    if shape is None or tuple(x.shape[1:]) == shape:
        return x
    if math.prod(x.shape[1:]) == math.prod(shape):
        return x.reshape(x.shape[0], *shape)  # (B, 1, 8, 8) <-> (B, 64)
    raise ShapeError(
        f"{what} expects samples of shape {shape} ({math.prod(shape)} values); the data has "
        f"{tuple(x.shape[1:])} ({math.prod(x.shape[1:])} values) - pick a preset sized for the data "
        "or override its in_features / image_size"
    )


class GenerativeTask(Task):
    """Shared set-up of the generative tasks: value range and sample shape (see module docs)."""

    Options = GenerativeOptions
    needs_target = False
    #: range used for images when data_range="auto"
    image_range: str = "unit"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.range = "standard"  # the range in use, resolved from data_range in setup
        self.norm: dict[str, Any] | None = None
        self.modality = ""
        self.sample_shape: tuple[int, ...] | None = None  # shape of one sample as the data holds it

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        self.modality = data.modality
        self.norm = data.info.get("normalization")
        self.sample_shape = tuple(int(s) for s in data.train.inputs[0].shape[1:])
        wanted = self.opts.data_range
        self.range = wanted if wanted != "auto" else (self.image_range if data.modality == "image" else "standard")
        if self.range != "standard" and data.modality != "image":
            raise ConfigError(
                f"data_range={self.range!r} rescales image pixels; dataset {data.name!r} is "
                f"{data.modality} - use data_range='standard'"
            )

    # -- value range -------------------------------------------------------------------------------
    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.norm:
            return None
        mean = torch.tensor(self.norm["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(self.norm["std"], dtype=x.dtype, device=x.device)
        if self.norm.get("over") == "channel":
            shape = (1, -1) + (1,) * (x.ndim - 2)
            mean, std = mean.reshape(shape), std.reshape(shape)
        return mean, std

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        """Data as loaded -> the task's range (images: undo the standardisation, then rescale)."""
        if self.range == "standard":
            return x
        stats = self._stats(x)
        if stats is not None:
            x = x * stats[1] + stats[0]  # back to pixels in [0, 1]
        x = x.clamp(0.0, 1.0)
        return x if self.range == "unit" else x * 2.0 - 1.0

    def to_display(self, x: torch.Tensor) -> torch.Tensor:
        """Samples in the task's range -> data layout for viewing (images in [0, 1])."""
        if self.sample_shape is not None and x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(self.sample_shape):
            x = x.reshape(x.shape[0], *self.sample_shape)
        if self.range == "unit":
            return x.clamp(0, 1)
        if self.range == "symmetric":
            return ((x + 1.0) / 2.0).clamp(0, 1)
        return x

    def prepare(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A batch of data, in range and in the model's sample shape."""
        return fit_shape(self.to_model_range(x), data_shape_of(model), model.__class__.__name__)

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator | None = None, **kw: Any) -> torch.Tensor:
        """``n`` samples in the data layout, images in [0, 1] (tasks whose models generate).

        Args:
            generator: the source of every random number drawn (never the global RNG when given).
            **kw: a task's own sampling options (diffusion: ``steps``, ``guidance``; ``labels``).
        """
        raise ConfigError(f"task {self.name!r} does not generate samples")

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return model(self.prepare(model, inputs[0]))
