"""Save and load models safely: ``config.json`` + ``model.safetensors``, never a pickle.

Writes are atomic (see :mod:`archlab.io`): the weights first, then ``config.json``, then
``manifest.json`` holding the SHA-256 of both. Loading verifies the manifest (a save written
before manifests existed loads unverified), rebuilds the model from the registry and fills it
with the saved tensors.

Any other ``nn.Module`` saves the same way (``"kind": "module"`` in config.json): its weights, and
its class's import path with the constructor arguments when they are known (the module's
``archlab_init_args`` attribute, set by ``archlab.fit(model, ..., model_args=...)``). Loading
such a save takes a module to fill (``load(dir, model=MyNet(...))``), or rebuilds one from the
import path when the arguments were recorded and the class's module is already imported (a
saved file never makes archlab import code by itself; the CLI imports it with ``--plugin``).

Either way, a digest mismatch, missing, unexpected or mis-shaped tensors, non-finite
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
#: ``kind`` of a config.json written for a module that is not from the registry
MODULE_KIND = "module"
#: the attribute holding a plain module's constructor keyword arguments (JSON values)
INIT_ARGS_ATTR = "archlab_init_args"


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
    """Save a model to ``directory`` (config.json + model.safetensors + manifest.json), atomically.

    A registry model records its name and config; any other module its import path and, when
    known, its constructor arguments (see :func:`module_source`).

    Returns:
        The directory.
    """
    write_model(model, directory, extra=extra)
    return Path(directory)


def write_model(
    model: nn.Module, directory: str | os.PathLike, *, extra: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write what :func:`save` writes; return each file's SHA-256 (file name -> hex digest)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model) if isinstance(getattr(model, "module", None), nn.Module) else model
    entry = registry_entry(model)
    if entry is not None:
        described = {"model": entry.name, "family": entry.family, "config": model.config.to_dict()}
    else:
        source = module_source(model)
        described = {"model": source["qualname"], "kind": MODULE_KIND, "source": source, "config": {}}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = strip_wrapper_prefixes(model.state_dict())
    # Weights first, then the config, then the manifest of both: a directory whose config.json
    # exists is complete, and one with a manifest can be verified.
    weights = tensors_to_bytes(state, {"archlab_version": __version__})
    config = _json_text({"archlab_version": __version__, **described, **(extra or {})})
    digests = {WEIGHTS_FILE: sha256_bytes(weights), CONFIG_FILE: sha256_bytes(config.encode("utf-8"))}
    atomic_write_bytes(directory / WEIGHTS_FILE, weights)
    atomic_write_text(directory / CONFIG_FILE, config)
    manifest = _json_text({"sha256": digests})
    atomic_write_text(directory / MANIFEST_FILE, manifest)
    return {**digests, MANIFEST_FILE: sha256_bytes(manifest.encode("utf-8"))}


def registry_entry(model: nn.Module):
    """The registry entry ``model`` was built from, or None for any other module (your own class,
    a Hugging Face model: its ``.config`` is not an archlab config)."""
    from archlab.registry import entry_for_model

    if getattr(model, "registry_name", None) is None and not hasattr(model, "config"):
        return None
    try:
        return entry_for_model(model)
    except ConfigError:
        return None


def module_source(model: nn.Module) -> dict[str, Any]:
    """How to rebuild a module that is not from the registry.

    Returns:
        ``{"module", "qualname", "args", "reload"}``: the class's import path, its constructor
        keyword arguments (the module's ``archlab_init_args``, or None when not given) and one
        sentence saying what reloading needs.

    Raises:
        ConfigError: ``archlab_init_args`` is not a JSON mapping of keyword arguments.
    """
    cls = type(model)
    args = getattr(model, INIT_ARGS_ATTR, None)
    if args is not None:
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise ConfigError(f"{INIT_ARGS_ATTR} must be a mapping of keyword arguments; got {type(args).__name__}")
        try:
            args = json.loads(json.dumps(args))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{INIT_ARGS_ATTR} of {cls.__name__} must hold JSON values (numbers, text, lists): {exc}"
            ) from None
    where = f"{cls.__module__}:{cls.__qualname__}"
    if args is None or "<locals>" in cls.__qualname__:
        reload = (
            f"reloading needs your class: pass model={cls.__name__}(...) built as for training "
            f"({where}; constructor arguments were not recorded)"
            if args is None
            else f"reloading needs your class: pass model={cls.__name__}(...) ({where} is defined inside a function)"
        )
    else:
        reload = f"rebuilt as {where}(**args) when {cls.__module__} is imported (CLI: --plugin {cls.__module__})"
    return {"module": cls.__module__, "qualname": cls.__qualname__, "args": args, "reload": reload}


def rebuild_module(source: dict[str, Any], where: str) -> nn.Module:
    """A fresh module of the class in ``source`` (see :func:`module_source`), built with its
    recorded arguments, from a module that is already imported.

    Raises:
        CheckpointError: the arguments were not recorded, the class's module is not imported, or
            the named object is not an ``nn.Module`` class.
    """
    import sys

    if not isinstance(source, dict) or not isinstance(source.get("module"), str):
        raise CheckpointError(f"{where}: 'source' must record the module and qualname of the class")
    name, qualname, args = source["module"], str(source.get("qualname")), source.get("args")
    if args is None or "<locals>" in qualname:
        raise CheckpointError(f"{where} holds a plain nn.Module; {source.get('reload') or 'pass model=...'}")
    if not isinstance(args, dict):
        raise CheckpointError(f"{where}: 'source.args' must be a mapping of keyword arguments; got {args!r:.60}")
    if name not in sys.modules:  # a saved file never makes archlab import code
        raise CheckpointError(
            f"{where} holds {name}:{qualname}, and {name} is not imported; import it first "
            f"(CLI: --plugin {name}) or pass model={qualname.rsplit('.', 1)[-1]}(...)"
        )
    obj: Any = sys.modules[name]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise CheckpointError(f"{where}: expected {name}:{qualname} to be an nn.Module class; got {obj!r:.60}")
    try:
        model = obj(**args)
    except Exception as exc:  # the user's constructor: whatever it raises, say where
        raise CheckpointError(f"{where}: {qualname}(**{args}) failed ({type(exc).__name__}: {exc})") from None
    setattr(model, INIT_ARGS_ATTR, args)
    return model


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


def read_config(directory: str | os.PathLike, *, registry_only: bool = True) -> dict[str, Any]:
    """Read and check a saved ``config.json``.

    Args:
        registry_only: raise for a save of a module that is not from the registry (callers that
            rebuild models by registry name), naming what loading it needs.
    """
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
    if meta.get("kind") == MODULE_KIND and registry_only:
        source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        raise CheckpointError(
            f"{directory} holds a plain nn.Module ({source.get('module')}:{source.get('qualname')}), not a registry "
            f"model; load it with archlab.load(dir, model=...) or archlab.runs.load_run(run, model=...)"
        )
    return meta


def load(
    directory: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    allow_nonfinite: bool = False,
    model: nn.Module | None = None,
) -> nn.Module:
    """Rebuild a model saved with :func:`save`; its outputs equal the original's bitwise.

    Args:
        allow_nonfinite: load weights holding NaN or Inf instead of raising.
        model: a module to fill with the saved weights (their names and shapes are checked).
            Needed for a save of your own ``nn.Module`` unless its import path and arguments
            were recorded (see :func:`rebuild_module`); a registry model is rebuilt without it.

    Raises:
        CheckpointError: missing, corrupt, tampered (SHA-256 mismatch) or malformed files,
            tensors that do not fit the model, non-finite weights.
    """
    from archlab.registry import create_from_config

    directory = Path(directory)
    meta = read_config(directory, registry_only=False)
    verify_saved(directory)
    if model is None and meta.get("kind") == MODULE_KIND:
        model = rebuild_module(meta.get("source"), str(directory / CONFIG_FILE))
    elif model is None:
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
