"""Save and load models safely: ``config.json`` + ``model.safetensors``, never a pickle.

Writes are atomic (see :mod:`archlab.io`). Loading rebuilds the model from the registry and
fills it with the saved tensors; missing, unexpected or mis-shaped tensors and corrupt files
raise :class:`CheckpointError` naming what is wrong. State dicts saved from a ``torch.compile``d
(``_orig_mod.``) or DDP-wrapped (``module.``) model load into a plain one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from archlab.errors import CheckpointError, ConfigError
from archlab.io import atomic_write_bytes, atomic_write_json

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
_ALIAS_KEY = "archlab.aliases"


def _version() -> str:
    from archlab import __version__

    return __version__


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``torch.compile`` / DDP prefixes (``_orig_mod.``, ``module.``), however nested."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
            key = key.replace("._orig_mod.", ".")
        out[key] = value
    return out


def tensors_to_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise a state dict to safetensors bytes; tensors sharing storage are stored once.

    Tied weights (e.g. a GPT's embedding and output head) share memory, which safetensors
    refuses; the duplicates are recorded as aliases in the metadata and restored on load.
    """
    seen: dict[tuple, str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, t in state.items():
        if t.device.type == "meta":
            raise CheckpointError(f"cannot save tensor {key!r}: it is on the meta device (no data)")
        sig = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() > 0 and sig in seen:
            aliases[key] = seen[sig]
            continue
        seen[sig] = key
        unique[key] = t.detach().to("cpu").contiguous().clone()
    meta = dict(metadata or {})
    if aliases:
        meta[_ALIAS_KEY] = json.dumps(aliases)
    return st_save(unique, metadata=meta)


def tensors_from_bytes(data: bytes, source: str = "<bytes>") -> dict[str, torch.Tensor]:
    """Parse safetensors bytes (restoring aliases); corrupt data raises CheckpointError."""
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises several kinds (SafetensorError, OSError, ...)
        raise CheckpointError(f"{source} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    meta = read_metadata(data)
    for alias, target in json.loads(meta.get(_ALIAS_KEY, "{}")).items():
        state[alias] = state[target]
    return state


def read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (header only)."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
    except Exception:
        return {}
    return header.get("__metadata__", {}) or {}


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped tensors."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:20])}" + (" ..." if len(unexpected) > 20 else ""))
    if misshaped:
        problems.append("mis-shaped tensors: " + "; ".join(misshaped[:20]))
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + " | ".join(problems))


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    """Check and copy ``state`` into ``model`` (wrapper prefixes stripped)."""
    state = strip_wrapper_prefixes(state)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
    return model


def save(model: nn.Module, directory: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Save a registry model to ``directory`` (config.json + model.safetensors), atomically.

    Returns:
        The directory.
    """
    from archlab.registry import entry_for_model

    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model) if isinstance(getattr(model, "module", None), nn.Module) else model
    if not hasattr(model, "config"):
        raise CheckpointError(f"{type(model).__name__} has no .config; only archlab models can be saved with archlab.save")
    entry = entry_for_model(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = strip_wrapper_prefixes(model.state_dict())
    # Weights first, config last: a directory whose config.json exists is complete.
    atomic_write_bytes(directory / WEIGHTS_FILE, tensors_to_bytes(state, {"archlab_version": _version()}))
    atomic_write_json(directory / CONFIG_FILE, {
        "archlab_version": _version(),
        "model": entry.name,
        "family": entry.family,
        "config": model.config.to_dict(),
        **(extra or {}),
    })
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check a saved ``config.json``."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {directory} (is it an archlab save directory?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "model" not in meta or "config" not in meta:
        raise CheckpointError(f"{path} lacks the keys 'model' and 'config'")
    return meta


def load(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved with :func:`save`; its outputs equal the original's bitwise."""
    from archlab.registry import create_from_config

    directory = Path(directory)
    meta = read_config(directory)
    try:
        model = create_from_config({"model": meta["model"], "config": meta["config"]})
    except ConfigError as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {exc}") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} in {directory}")
    state = tensors_from_bytes(weights.read_bytes(), str(weights))
    load_state_into(model, state, str(weights))
    return model.to(device)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or (safely) from a ``.pt``/``.pth`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    if path.suffix == ".safetensors":
        return tensors_from_bytes(path.read_bytes(), str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} could not be read as a weights-only torch file ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state
