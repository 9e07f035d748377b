"""What the advisor knows about the data: read from a DataBundle, or given by the caller.

:func:`inspect_data` reads a bundle (or a bundled name / a user's path) into :class:`DataFacts`;
:func:`fit_to_data` fills a registry preset's data-dependent config fields (input width, classes,
vocabulary, sequence length) the same way ``archlab.runs.adapt`` does for training, so that the
sizes the advisor reports are those of the model ``archlab train`` would build.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from archlab import capabilities
from archlab.errors import ConfigError, DataError


@dataclass
class DataFacts:
    """Facts about a dataset that the rules read (None where unknown)."""

    name: str | None = None
    modality: str | None = None
    task: str | None = None
    input_shape: list[int] | None = None
    n_samples: int | None = None
    num_classes: int | None = None
    class_counts: list[int] | None = None
    seq_len: int | None = None
    season: int | None = None
    vocab_size: int | None = None
    num_nodes: int | None = None
    in_features: int | None = None
    image_size: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def imbalance(self) -> float | None:
        """Largest class count over smallest (None without counts)."""
        counts = [c for c in (self.class_counts or []) if c > 0]
        if len(counts) < 2:
            return None
        return max(counts) / min(counts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["imbalance"] = self.imbalance
        return d


def load_bundle(data: Any, task: str | None = None, options: dict[str, Any] | None = None):
    """A DataBundle from a bundle, a bundled name or a path, loaded with ``options``.

    A user's CSV also gets ``task`` (``forecasting`` reads it as a time series; ``classification`` /
    ``regression`` pick the tabular target's kind); bundled names choose their task after loading.
    """
    from pathlib import Path

    from archlab.data import load
    from archlab.data.base import DataBundle
    from archlab.data.bundled import is_bundled_name

    if isinstance(data, DataBundle):
        return data
    options = dict(options or {})
    is_csv = not (isinstance(data, str) and is_bundled_name(data)) and Path(data).suffix.lower() == ".csv"
    if task and is_csv:
        options.setdefault("task", task)
    return load(data, **options)


def inspect_data(bundle, task: str | None = None) -> DataFacts:
    """Read :class:`DataFacts` from a DataBundle."""
    info = dict(bundle.info or {})
    x = bundle.train.inputs[0] if bundle.train is not None and bundle.train.inputs else None
    y = bundle.train.target if bundle.train is not None else None
    facts = DataFacts(
        name=bundle.name, modality=capabilities.modality(bundle.modality), task=capabilities.task(task or bundle.task)
    )
    facts.input_shape = list(info.get("input_shape") or (list(x.shape[1:]) if x is not None else [])) or None
    facts.n_samples = len(bundle.train) if bundle.train is not None else None
    facts.num_classes = info.get("num_classes")
    facts.seq_len = info.get("seq_len")
    facts.season = info.get("season")
    facts.vocab_size = info.get("vocab_size") or (len(info["vocab"]) if info.get("vocab") else None)
    facts.num_nodes = info.get("num_nodes")
    facts.in_features = info.get("in_features")
    facts.image_size = list(info["image_size"]) if info.get("image_size") else None
    if facts.modality == "time_series" and facts.seq_len is None and x is not None and x.ndim == 3:
        facts.seq_len = int(x.shape[-1])
    if (
        facts.num_classes
        and isinstance(y, torch.Tensor)
        and not y.is_floating_point()
        and facts.task in ("classification", "graph_classification", "node_classification", "ctr")
    ):
        labels = y[bundle.train.mask] if bundle.train.mask is not None else y
        labels = labels.reshape(-1)
        labels = labels[labels >= 0]
        if labels.numel():
            facts.class_counts = torch.bincount(labels, minlength=int(facts.num_classes)).tolist()
    if facts.task == "ctr" and facts.num_classes is None:
        facts.num_classes = 2
    if info.get("field_sizes"):
        facts.extra["field_sizes"] = list(info["field_sizes"])
    return facts


def facts_from_args(
    modality: str | None, task: str | None, input_shape=None, n_samples=None, num_classes=None, seq_len=None
) -> DataFacts:
    """Facts from the caller's words when there is no data."""
    if modality is None:
        raise DataError(f"recommend needs data, or modality= (one of {', '.join(capabilities.MODALITIES)})")
    facts = DataFacts(modality=capabilities.modality(modality), task=capabilities.task(task) if task else None)
    facts.input_shape = list(input_shape) if input_shape else None
    facts.n_samples, facts.num_classes, facts.seq_len = n_samples, num_classes, seq_len
    shape = facts.input_shape or []
    if facts.modality == "tabular" and len(shape) == 1:
        facts.in_features = int(shape[0])
    if facts.modality == "image" and len(shape) == 3:
        facts.image_size = [int(shape[1]), int(shape[2])]
    if facts.modality == "time_series" and facts.seq_len is None and len(shape) >= 1:
        facts.seq_len = int(shape[-1])
    if facts.task is None:
        facts.task = {"text": "language_modeling", "graph": "node_classification"}.get(facts.modality, "classification")
    return facts


def fit_to_data(
    entry, bundle=None, task: str | None = None, facts: DataFacts | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Overrides that fit ``entry``'s config to the data, by the one rule of :mod:`archlab.tasks.adapt`.

    With a bundle the task's own ``model_overrides`` gives the output size; with facts only, the
    class count / input width / sequence length / image size of the facts are used.
    """
    from archlab.tasks import get_task
    from archlab.tasks.adapt import adapt_overrides

    fields = dict(entry.config.model_fields)
    defaults = entry.config.build(entry.defaults).model_dump()
    if bundle is not None:
        try:
            task_obj = get_task(task or bundle.task)
        except ConfigError:  # no trainer for this task: sizes from the data's facts only
            task_obj = None
        x = bundle.train.inputs[0] if bundle.train.inputs else None
        return adapt_overrides(
            fields,
            dict(bundle.info),
            task=task_obj,
            data=bundle if task_obj else None,
            x=x,
            user=user,
            defaults=defaults,
        )
    info: dict[str, Any] = {}
    if facts is not None:
        info = {
            k: v
            for k, v in {
                "in_features": facts.in_features,
                "num_classes": facts.num_classes,
                "seq_len": facts.seq_len,
                "vocab_size": facts.vocab_size,
            }.items()
            if v
        }
        if facts.input_shape and facts.modality in ("image", "time_series") and len(facts.input_shape) >= 2:
            info["in_channels"] = facts.input_shape[0]
        if facts.image_size:
            info["image_size"] = facts.image_size
    return adapt_overrides(fields, info, user=user, defaults=defaults)
