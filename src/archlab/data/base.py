"""In-memory datasets as the trainer sees them.

A loader returns a :class:`DataBundle`: train / val / test :class:`Split` s of tensors plus the
facts a model and task need (classes, channels, vocabulary, normalisation statistics fitted on
train only). The trainer batches a Split by indexing its tensors, never through a per-sample
Dataset, which is what keeps small models fast.

Data that does not fit in memory comes as a :class:`StreamSplit` instead: its samples are read
from disk on demand by a :class:`SampleSource` (a memory-mapped token stream, a folder of images
decoded lazily, a memory-mapped ``.npy``), one batch at a time. It answers ``len``, ``take`` and
``to`` like a Split, so evaluation and the trainer treat both alike; only the in-memory
``inputs`` are missing (asking for them is a :class:`DataError` saying the split is streamed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from archlab import capabilities
from archlab.errors import DataError


@dataclass
class Split:
    """One split: model inputs (forward's positional arguments), a target, an optional mask.

    Attributes:
        inputs: tensors whose first dimension is the sample dimension N, passed to
            ``model(*inputs)`` after indexing. For a whole-graph dataset (node classification)
            the inputs are the full graph and ``mask`` selects this split's nodes.
        target: (N, ...) labels or regression targets; ``None`` for unsupervised data.
        mask: (num_nodes,) bool for transductive graph splits; otherwise ``None``.
    """

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        if self.mask is not None:
            return int(self.mask.sum())
        return int(self.inputs[0].shape[0])

    @property
    def indexable(self) -> bool:
        """False for whole-graph splits, which are used as one batch."""
        return self.mask is None

    def take(self, idx: torch.Tensor) -> Split:
        """The rows ``idx`` of every tensor (a batch)."""
        if not self.indexable:
            raise TypeError("a whole-graph split cannot be indexed into batches")
        return Split(
            inputs=tuple(t[idx] for t in self.inputs),
            target=None if self.target is None else self.target[idx],
        )

    def to(self, device: torch.device | str) -> Split:
        return Split(
            inputs=tuple(t.to(device) for t in self.inputs),
            target=None if self.target is None else self.target.to(device),
            mask=None if self.mask is None else self.mask.to(device),
        )


@runtime_checkable
class SampleSource(Protocol):
    """Where a streamed split's samples come from (implementations: :mod:`archlab.data.streams`).

    A source is a map-style dataset: ``source[i]`` is one sample as ``(inputs, target)`` (a tuple
    of tensors without the batch dimension, and a tensor or None), which is what
    ``torch.utils.data.DataLoader`` workers call; ``fetch`` reads a whole batch at once in the
    calling process (vectorised where it can be, e.g. token windows). Both apply the recorded
    normalisation. A source must be picklable (DataLoader workers receive a copy) and must not
    hold more than a bounded cache in memory.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]: ...

    def fetch(self, idx: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]: ...


@dataclass
class StreamSplit:
    """A split read from disk batch by batch (data larger than memory).

    Attributes:
        source: the samples (see :class:`SampleSource`).
        sampling: ``"epoch"``: each epoch visits every sample once, in an order seeded by
            (seed, epoch) (image folders, ``.npy`` files); ``"random"``: every batch draws its
            sample indices uniformly with replacement from the trainer's data generator
            (token streams: windows at any offset, nanoGPT's sampling, nothing materialised).
        labels: the targets when they are small enough to hold (class ids of an image
            folder), so tasks can count classes; None when they are read with the inputs.
        workers: DataLoader worker processes that decode samples while the model trains
            (0: read in the training process, what token streams want).
        describe: what is streamed, for logs and ``data_info.json`` (file, dtype, samples).
    """

    source: SampleSource
    sampling: Literal["epoch", "random"] = "epoch"
    labels: torch.Tensor | None = None
    workers: int = 0
    describe: dict[str, Any] = field(default_factory=dict)
    mask: None = None
    streamed = True

    def __len__(self) -> int:
        return len(self.source)

    @property
    def indexable(self) -> bool:
        return True

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        raise DataError(
            f"this split is streamed from disk ({self.describe.get('what', 'a sample source')}, {len(self)} samples) "
            "and is not held in memory; this step needs it in memory: load the data with stream=False"
        )

    @property
    def target(self) -> torch.Tensor | None:
        if self.labels is not None:
            return self.labels
        raise DataError(
            f"this split's targets are streamed from disk with its inputs ({len(self)} samples); "
            "this step needs them in memory: load the data with stream=False"
        )

    def take(self, idx: torch.Tensor | slice | np.ndarray) -> Split:
        """Samples ``idx`` read from the source, as an in-memory Split (a batch)."""
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        elif isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        inputs, target = self.source.fetch(np.asarray(idx, dtype=np.int64))
        return Split(inputs=inputs, target=target)

    def to(self, device: torch.device | str) -> StreamSplit:
        """Itself: batches move to the device as they are read."""
        return self


def is_streamed(split: Any) -> bool:
    """True for a :class:`StreamSplit` (read from disk), False for an in-memory :class:`Split`."""
    return bool(getattr(split, "streamed", False))


@dataclass
class DataBundle:
    """A dataset ready to train on.

    Attributes:
        name: ``"digits"``, ``"ucr:GunPoint"``, a file path, ...
        modality: a word of :mod:`archlab.capabilities` (``image``, ``time_series``, ``text``,
            ``tabular``, ``graph``, ``points``); synonyms are turned into it.
        task: the task it suits by default, a word of :mod:`archlab.capabilities`
            (``classification``, ``forecasting``, ``language_modeling``, ...).
        train, val, test: the splits (val / test may be None).
        info: facts for models and tasks, e.g. ``num_classes``, ``in_channels``,
            ``in_features``, ``seq_len``, ``vocab`` (list of str), ``horizon``, ``season``,
            ``normalization`` ({"mean": [...], "std": [...]} fitted on train only),
            ``class_names``, ``feature_names``, ``dropped`` (rows dropped on request).
    """

    name: str
    modality: str
    task: str
    train: Split
    val: Split | None = None
    test: Split | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.modality = capabilities.modality(self.modality)
        self.task = capabilities.task(self.task)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits().items())
        return f"DataBundle({self.name!r}, modality={self.modality!r}, task={self.task!r}, {sizes})"

    def splits(self) -> dict[str, Split]:
        return {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v is not None}

    def denormalize_target(self, t: torch.Tensor) -> torch.Tensor:
        """Map a target or prediction back to the data's units (identity when not normalised).

        Uses ``info["target_normalization"]`` (train statistics), set by forecasting loaders and
        by regression loaders called with ``normalize_target=True``.
        """
        stats = self.info.get("target_normalization")
        if not stats:
            return t
        mean = torch.tensor(stats["mean"], dtype=t.dtype, device=t.device)
        std = torch.tensor(stats["std"], dtype=t.dtype, device=t.device)
        if mean.numel() > 1:  # per-column statistics of an (N, k) target
            return t * std + mean
        return t * std[0] + mean[0]

    def normalize_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the train-split normalisation of ``info["normalization"]`` to new raw inputs
        (e.g. at prediction time); identity when the data was not normalised."""
        return apply_normalization(x, self.info.get("normalization"))


def apply_normalization(x: torch.Tensor, stats: dict[str, Any] | None) -> torch.Tensor:
    """Standardise new raw inputs with saved ``info["normalization"]`` statistics.

    ``over`` says how the lists broadcast: ``feature`` along the last dim of (N, F);
    ``channel`` along dim 1 of (N, C, ...); ``series`` / ``target`` one scalar.
    """
    if not stats:
        return x
    mean = torch.tensor(stats["mean"], dtype=x.dtype, device=x.device)
    std = torch.tensor(stats["std"], dtype=x.dtype, device=x.device)
    if stats.get("over") == "channel":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean, std = mean.reshape(shape), std.reshape(shape)
    elif stats.get("over") in ("series", "target", "all") and mean.numel() == 1:
        mean, std = mean[0], std[0]
    return (x - mean) / std
