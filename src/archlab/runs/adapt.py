"""Fit a registry model's config to a dataset: the rule, in one place.

For every config field below that the model's config has and the user did NOT set, the value
comes from the data (``DataBundle.info``, else the split's tensors) or from the task:

=====================================  ==============================================================
model config field                     value
=====================================  ==============================================================
``in_features``                        ``info["in_features"]``, else the width of 2-D inputs (N, F)
``in_channels``                        ``info["in_channels"]``
``input_size``                         ``info["in_channels"]``, else ``info["in_features"]`` (RNNs)
``vocab_size``                         ``info["vocab_size"]``, else ``len(info["vocab"])``
``seq_len`` / ``input_length``         ``info["seq_len"]``
``block_size`` / ``max_seq_len``       ``info["seq_len"]`` (only when larger than the preset's)
``horizon``                            the target's horizon (forecasting)
first of ``num_classes``,              the task's output size: classes (classification, tagging,
``out_features``, ``out_channels``,    segmentation), target width (regression), and for
``output_size``, ``num_outputs``       forecasting the horizon x channels, or the channels alone
                                       when the model has its own ``horizon`` field
=====================================  ==============================================================

Nothing else is changed; an explicit user value always wins.
"""

from __future__ import annotations

from typing import Any

from archlab.data.base import DataBundle

OUT_FIELDS = ("num_classes", "out_features", "out_channels", "output_size", "num_outputs")


def adapt_overrides(fields: set[str] | dict[str, Any], data: DataBundle, task, user: dict[str, Any],
                    defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Overrides derived from ``data`` and ``task`` for a config with ``fields``, minus ``user``'s keys."""
    info = data.info
    derived: dict[str, Any] = {}
    x = data.train.inputs[0] if data.train.inputs else None
    in_features = info.get("in_features") or (int(x.shape[1]) if x is not None and x.ndim == 2 and x.is_floating_point() else None)
    if in_features:
        derived["in_features"] = int(in_features)
    if info.get("in_channels"):
        derived["in_channels"] = int(info["in_channels"])
    if info.get("in_channels") or in_features:
        derived["input_size"] = int(info.get("in_channels") or in_features)
    vocab = info.get("vocab_size") or (len(info["vocab"]) if info.get("vocab") else None)
    if vocab:
        derived["vocab_size"] = int(vocab)
    if info.get("seq_len"):
        for key in ("seq_len", "input_length"):
            derived[key] = int(info["seq_len"])
        for key in ("block_size", "max_seq_len"):
            current = (defaults or {}).get(key)
            if current is None or int(info["seq_len"]) > int(current):
                derived[key] = int(info["seq_len"])
    task_out = task.model_overrides(info, data) if task is not None else {}
    if "horizon" in task_out:
        derived["horizon"] = task_out["horizon"]
    out = task_out.get("out")
    if out:
        if "horizon" in fields and "horizon" in task_out and task_out["horizon"]:
            out = max(1, out // task_out["horizon"])
        for key in OUT_FIELDS:
            if key in fields:
                derived[key] = int(out)
                break
    if task_out.get("vocab"):
        derived["vocab_size"] = int(task_out["vocab"])
    derived.update(task_out.get("fields") or {})  # task-named config fields (e.g. a CTR model's field_sizes)
    return {k: v for k, v in derived.items() if k in fields and k not in user and _accepts(fields, k, v)}


def _accepts(fields, key: str, value: Any) -> bool:
    """Whether the config field ``key`` takes ``value`` (``input_size`` is an int in an RNN, a list in a CNN)."""
    if not isinstance(fields, dict):
        return True
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(fields[key].annotation).validate_python(value)
    except ValidationError:
        return False
    return True


def build_model(name: str, data: DataBundle, task, overrides: dict[str, Any] | None = None, device=None):
    """``archlab.create(name, **overrides)`` with the fields above filled from ``data``."""
    from archlab.registry import create, get_entry

    entry = get_entry(name)
    fields = dict(entry.config.model_fields)
    user = dict(overrides or {})
    defaults = entry.config.build(entry.defaults).model_dump()
    derived = adapt_overrides(fields, data, task, user, defaults)
    return create(name, device=device, **{**derived, **user})
