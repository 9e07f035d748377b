"""Fit a registry model's config to the data and the task: the rule, in one place.

Used by ``archlab.fit`` (:mod:`archlab.runs.adapt`) and by the advisor (:mod:`archlab.advise`).
For every config field below that the model's config has and the user did NOT set, the value
comes from the data's facts (``DataBundle.info``, else the split's tensors) or from the task:

=====================================  ==============================================================
model config field                     value
=====================================  ==============================================================
``in_features``                        ``info["in_features"]``, else the width of 2-D inputs (N, F)
``in_channels``                        ``info["in_channels"]``
``input_size``                         an int field: ``info["in_channels"]``, else ``in_features``
                                       (RNNs); a list field: ``info["image_size"]`` ([H, W], or
                                       [W] for a 1-D model), else ``[seq_len]`` (CNNs' flatten head)
``image_size`` / ``example_size``      the image width (square models; a non-square image fails
                                       the config's own check with a clear error)
``vocab_size``                         ``info["vocab_size"]``, else ``len(info["vocab"])``
``seq_len`` / ``input_length`` /      ``info["seq_len"]``
``length``
``block_size`` / ``max_seq_len``       ``info["seq_len"]`` (only when larger than the preset's)
``horizon``                            the target's horizon (forecasting)
first of ``num_classes``,              the task's output size: classes (classification, tagging,
``out_features``, ``out_channels``,    segmentation), target width (regression), and for
``output_size``, ``num_outputs``       forecasting the horizon x channels, or the channels alone
                                       when the model has its own ``horizon`` field; without a
                                       task, ``info["num_classes"]``
=====================================  ==============================================================

A value is only set where the field's type accepts it (``input_size`` is an int in an RNN, a
list in a CNN). Nothing else is changed; an explicit user value always wins.
"""

from __future__ import annotations

from typing import Any

import torch

OUT_FIELDS = ("num_classes", "out_features", "out_channels", "output_size", "num_outputs")


def adapt_overrides(
    fields: dict[str, Any],
    info: dict[str, Any],
    *,
    task=None,
    data=None,
    x: torch.Tensor | None = None,
    user: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Config overrides from the data's ``info`` (and a sample batch ``x``) and the task.

    Args:
        fields: the config class's ``model_fields``.
        info: facts of the data (``DataBundle.info`` keys).
        task: a task object; its ``model_overrides(info, data)`` gives output sizes.
        data: the DataBundle the task reads (may be None when only facts are known).
        x: the first training input, for widths the info does not state.
        user: the user's own overrides (never replaced).
        defaults: the preset's resolved config (to only ever grow learned positions).
    """
    user, defaults = user or {}, defaults or {}
    derived: dict[str, Any] = {}
    in_features = info.get("in_features") or (
        int(x.shape[1]) if x is not None and x.ndim == 2 and x.is_floating_point() else None
    )
    if in_features:
        derived["in_features"] = int(in_features)
    if info.get("in_channels"):
        derived["in_channels"] = int(info["in_channels"])
    sizes: list[Any] = []  # candidates for input_size, the first the field accepts wins
    if info.get("in_channels") or in_features:
        sizes.append(int(info.get("in_channels") or in_features))
    if info.get("image_size"):
        image = [int(s) for s in info["image_size"]]
        sizes.append(image if defaults.get("dims", 2) == 2 else image[-1:])
        derived["image_size"] = derived["example_size"] = image[-1]
    elif info.get("seq_len"):
        sizes.append([int(info["seq_len"])])
    vocab = info.get("vocab_size") or (len(info["vocab"]) if info.get("vocab") else None)
    if vocab:
        derived["vocab_size"] = int(vocab)
    if info.get("seq_len"):
        for key in ("seq_len", "input_length", "length"):
            derived[key] = int(info["seq_len"])
        for key in ("block_size", "max_seq_len"):
            current = defaults.get(key)
            if current is None or int(info["seq_len"]) > int(current):
                derived[key] = int(info["seq_len"])
    task_out = task.model_overrides(info, data) if task is not None and data is not None else {}
    if task_out.get("horizon"):
        derived["horizon"] = task_out["horizon"]
    out = task_out.get("out") if task is not None and data is not None else info.get("num_classes")
    if out:
        if "horizon" in fields and task_out.get("horizon"):
            out = max(1, out // task_out["horizon"])
        for key in OUT_FIELDS:
            if key in fields:
                derived[key] = int(out)
                break
    if task_out.get("vocab"):
        derived["vocab_size"] = int(task_out["vocab"])
    derived.update(task_out.get("fields") or {})  # task-named config fields (e.g. a CTR model's field_sizes)
    result = {k: v for k, v in derived.items() if k in fields and k not in user and accepts(fields[k], v)}
    if "input_size" in fields and "input_size" not in user:
        accepted = [s for s in sizes if accepts(fields["input_size"], s)]
        if accepted:
            result["input_size"] = accepted[0]
    return result


def accepts(field_info: Any, value: Any) -> bool:
    """Whether a pydantic field takes ``value`` as it is."""
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(field_info.annotation).validate_python(value)
    except ValidationError:
        return False
    return True
