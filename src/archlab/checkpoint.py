"""Save and load models safely: ``config.json`` + ``model.safetensors``, never a pickle.

Writes are atomic (see :mod:`archlab.io`): the weights first, then ``config.json``, then
``manifest.json`` holding the SHA-256 of both. Loading verifies the manifest (a save written
before manifests existed loads unverified), rebuilds the model from the registry and fills it
with the saved tensors; a digest mismatch, missing, unexpected or mis-shaped tensors, non-finite
weights (unless ``allow_nonfinite=True``) and corrupt or malformed files raise
:class:`CheckpointError` naming the file and what is wrong. State dicts saved from a
``torch.compile``d (``_orig_mod.``) or DDP-wrapped (``module.``) model load into a plain one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from archlab._version import __version__
from archlab.errors import CheckpointError, ConfigError
from archlab.io import atomic_write_bytes, atomic_write_text, digest_problems, sha256_bytes

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
_ALIAS_KEY = "archlab.aliases"


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``torch.compile`` / DDP prefixes (``_orig_mod.``, ``module.``), however nested."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
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
    raw = read_metadata(data).get(_ALIAS_KEY, "{}")
    try:
        aliases = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        aliases = None
    if not isinstance(aliases, dict):
        raise CheckpointError(f"{source}: metadata {_ALIAS_KEY!r} is not a JSON mapping of alias -> tensor name")
    for alias, target in aliases.items():
        if not isinstance(target, str) or target not in state:
            raise CheckpointError(
                f"{source}: metadata {_ALIAS_KEY!r} maps {alias!r} to {target!r}, which is not a tensor in the file"
            )
        state[alias] = state[target]
    return state


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming the first tensors holding NaN or Inf."""
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(
            f"{source} holds non-finite (NaN/Inf) values in {', '.join(bad[:5])}"
            + (" ..." if len(bad) > 5 else "")
            + "; pass allow_nonfinite=True to load it anyway"
        )


def read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (header only)."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
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
    """Save a registry model to ``directory`` (config.json + model.safetensors + manifest.json),
    atomically.

    Returns:
        The directory.
    """
    write_model(model, directory, extra=extra)
    return Path(directory)


def write_model(
    model: nn.Module, directory: str | os.PathLike, *, extra: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write what :func:`save` writes; return each file's SHA-256 (file name -> hex digest)."""
    from archlab.registry import entry_for_model

    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model) if isinstance(getattr(model, "module", None), nn.Module) else model
    if not hasattr(model, "config"):
        raise CheckpointError(
            f"{type(model).__name__} has no .config; only archlab models can be saved with archlab.save"
        )
    entry = entry_for_model(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = strip_wrapper_prefixes(model.state_dict())
    # Weights first, then the config, then the manifest of both: a directory whose config.json
    # exists is complete, and one with a manifest can be verified.
    weights = tensors_to_bytes(state, {"archlab_version": __version__})
    config = _json_text(
        {
            "archlab_version": __version__,
            "model": entry.name,
            "family": entry.family,
            "config": model.config.to_dict(),
            **(extra or {}),
        }
    )
    digests = {WEIGHTS_FILE: sha256_bytes(weights), CONFIG_FILE: sha256_bytes(config.encode("utf-8"))}
    atomic_write_bytes(directory / WEIGHTS_FILE, weights)
    atomic_write_text(directory / CONFIG_FILE, config)
    manifest = _json_text({"sha256": digests})
    atomic_write_text(directory / MANIFEST_FILE, manifest)
    return {**digests, MANIFEST_FILE: sha256_bytes(manifest.encode("utf-8"))}


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def verify_saved(directory: str | os.PathLike) -> bool:
    """Check the files of a save directory against its manifest.json.

    Returns:
        True when verified, False for a save without a manifest (written by an older archlab).

    Raises:
        CheckpointError: a file is missing or its SHA-256 differs (named), or the manifest is
            malformed.
    """
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        log.debug("%s has no %s; loading it unverified", directory, MANIFEST_FILE)
        return False
    manifest = _read_json(path)
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise CheckpointError(f"{path}: expected a mapping with key 'sha256' (file name -> hex digest)")
    problems = digest_problems(directory, manifest["sha256"])
    if problems:
        raise CheckpointError(f"{directory} failed its integrity check: " + "; ".join(problems))
    return True


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read ({exc.strerror or exc})") from None


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check a saved ``config.json``."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {directory} (is it an archlab save directory?)")
    meta = _read_json(path)
    if not isinstance(meta, dict) or "model" not in meta or "config" not in meta:
        raise CheckpointError(f"{path} lacks the keys 'model' and 'config'")
    if not isinstance(meta["model"], str):
        raise CheckpointError(
            f"{path}: field 'model' must be a model name (a string); got {type(meta['model']).__name__}"
        )
    if not isinstance(meta["config"], dict):
        raise CheckpointError(
            f"{path}: field 'config' must be a mapping of config fields; got {type(meta['config']).__name__}"
        )
    return meta


def load(
    directory: str | os.PathLike, *, device: str | torch.device = "cpu", allow_nonfinite: bool = False
) -> nn.Module:
    """Rebuild a model saved with :func:`save`; its outputs equal the original's bitwise.

    Args:
        allow_nonfinite: load weights holding NaN or Inf instead of raising.

    Raises:
        CheckpointError: missing, corrupt, tampered (SHA-256 mismatch) or malformed files,
            tensors that do not fit the model, non-finite weights.
    """
    from archlab.registry import create_from_config

    directory = Path(directory)
    meta = read_config(directory)
    verify_saved(directory)
    try:
        model = create_from_config({"model": meta["model"], "config": meta["config"]})
    except ConfigError as exc:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {exc}") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} in {directory}")
    state = tensors_from_bytes(weights.read_bytes(), str(weights))
    if not allow_nonfinite:
        check_finite(state, str(weights))
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
