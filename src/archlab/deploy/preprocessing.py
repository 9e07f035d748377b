"""``preprocessing.json``: what a server must do to raw data before the model sees it - the run's
recorded :class:`~archlab.data.preprocess.Preprocessing` (statistics fitted on the train split) -
plus the input signature."""

from __future__ import annotations

from typing import Any

import torch

from archlab.data.preprocess import Preprocessing

# data_info keys a server needs; everything else (row counts, dropped rows) stays behind.
_SERVING_KEYS = (
    "modality",
    "task",
    "normalization",
    "target_normalization",
    "class_names",
    "vocab",
    "num_classes",
    "in_channels",
    "in_features",
    "seq_len",
    "feature_names",
    "horizon",
    "image_size",
    "input_size",
    "tokenizer",
    "pad_id",
    "bos_id",
    "eos_id",
)

_LAYOUTS = {
    (True, 2): "B F (batch, features)",
    (True, 3): "B C L (batch, channels, length)",
    (True, 4): "B C H W (batch, channels, height, width)",
    (True, 5): "B C D H W",
    (False, 1): "B (batch of ids)",
    (False, 2): "B T (batch, sequence of token ids)",
}


def layout(t: torch.Tensor) -> str:
    """A guess of a tensor input's layout from its rank and dtype ("B C H W", "B T", ...)."""
    return _LAYOUTS.get((t.is_floating_point(), t.dim()), " ".join(["B"] + [f"d{i}" for i in range(1, t.dim())]))


def signature(
    names: list[str], tensors: list[torch.Tensor], dynamic: dict[str, dict[int, str]]
) -> list[dict[str, Any]]:
    """[{name, dtype, shape (symbolic axes as names), layout}] for inputs or outputs."""
    out = []
    for name, t in zip(names, tensors):
        axes = dynamic.get(name, {})
        shape = [axes.get(i, int(s)) for i, s in enumerate(t.shape)]
        out.append({"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": shape, "layout": layout(t)})
    return out


def preprocessing(info: dict[str, Any], inputs: list[dict[str, Any]], model_name: str) -> dict[str, Any]:
    """The contents of ``preprocessing.json``.

    The run's recorded :class:`~archlab.data.preprocess.Preprocessing` goes in whole under
    ``"preprocessing"`` (``Preprocessing.from_json`` reads it back and applies it); ``"steps"``
    says the same in words. The flat keys (``normalization``, ``class_names``, ...) stay for
    servers that read them directly.

    Args:
        info: the run's data_info.json ({} for a registry name: nothing is known about the data).
        inputs: the input signature (:func:`signature`).
        model_name: the registry name.
    """
    kept = {k: info[k] for k in _SERVING_KEYS if k in info}
    recorded = info.get("preprocessing")
    prep = Preprocessing.from_json(recorded) if isinstance(recorded, dict) else None
    if prep is not None:
        steps = prep.describe()
    else:  # a run from before the preprocessing was recorded: what data_info.json says
        steps = []
        if kept.get("normalization"):
            steps.append("x = (x - mean) / std  (train-split statistics, per channel / feature)")
        if "vocab" in kept:
            steps.append("tokens = [vocab.index(ch) for ch in text]  (ids into vocab)")
    return {
        "schema_version": 2,
        "model": model_name,
        "inputs": inputs,
        "steps": steps or ["none recorded: the model takes its inputs as they are"],
        "preprocessing": None if prep is None else prep.to_json(),
        **kept,
    }
