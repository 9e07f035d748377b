"""Turn what the user passed (a name, a run directory, a module, a compiled module) and an
input spec into a module on the analysis device and the arguments for its forward."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.inputs import batch_of, make_inputs, meta_copy, unwrap

__all__ = ["batch_of", "make_inputs", "meta_copy", "unwrap"]

DEVICES = ("meta", "cpu")


def _saved_model_dir(value: Any) -> Path | None:
    """The directory holding ``config.json`` for a saved model or a training run, else None.

    A training run (``config.yaml`` with ``best/`` / ``last/`` checkpoints) resolves to the
    checkpoint with its final weights, as ``archlab evaluate`` does.
    """
    if not isinstance(value, (str, os.PathLike)) or not Path(value).is_dir():
        return None
    path = Path(value)
    if (path / "config.json").is_file():
        return path
    if (path / "config.yaml").is_file():
        from archlab.rundir import RunDir, final_checkpoint

        return final_checkpoint(path, RunDir(path).read_config())
    return None


def resolve_model(
    model: nn.Module | str | os.PathLike, device: str, overrides: dict | None = None
) -> tuple[nn.Module, str, bool]:
    """(module ready for analysis, display name, whether it is a private copy we may mutate)."""
    if device not in DEVICES and not str(device).startswith("cuda"):
        raise ConfigError(f"device must be one of {list(DEVICES)} (or a cuda device); got {device!r}")
    from archlab.registry import create, create_from_config

    saved_dir = _saved_model_dir(model)
    if saved_dir is not None:
        from archlab.checkpoint import read_config

        meta = read_config(saved_dir)
        cfg = {**meta["config"], **(overrides or {})}
        built = create_from_config({"model": meta["model"], "config": cfg}, device=device)
        return built, f"{meta['model']} ({Path(model).name})", True
    if isinstance(model, (str, os.PathLike)):
        text = str(model)
        if isinstance(model, os.PathLike) or os.sep in text or text.startswith((".", "~")):
            path = Path(text).expanduser()
            what = "no such file or directory" if not path.exists() else "not a saved model or run directory"
            raise ConfigError(f"{text}: {what} (expected a registry name, a run directory or a saved model)")
        return create(text, device=device, **(overrides or {})), text, True
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected an nn.Module, a registry name or a run directory; got {type(model).__name__}")
    if overrides:
        raise ConfigError("config overrides (--set) apply to registry names and run directories, not modules")
    module = unwrap(model)
    name = getattr(module, "registry_name", None) or type(module).__name__
    on_meta = any(t.device.type == "meta" for t in itertools.chain(module.parameters(), module.buffers()))
    if device == "meta":
        if on_meta or not any(True for _ in itertools.chain(module.parameters(), module.buffers())):
            return module, name, False
        return meta_copy(module), name, True
    if on_meta:
        raise ConfigError(f"{name} is on the meta device (no weights); analyse it with device='meta'")
    return module, name, False


@contextlib.contextmanager
def preserved_state(module: nn.Module, private: bool) -> Iterator[None]:
    """Restore buffers (e.g. BatchNorm running stats) of a user's module after a forward."""
    if private:
        yield
        return
    saved = {k: v.detach().clone() for k, v in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in module.named_buffers():
                if k in saved:
                    v.copy_(saved[k])


def check_cpu_rerun_possible(model: Any, exc: BaseException) -> None:
    """Before re-running on the CPU after a data-dependent failure on meta tensors: a module
    whose weights are on the meta device cannot run there, so say what happened instead."""
    if not isinstance(model, nn.Module):
        return
    module = unwrap(model)
    if any(t.device.type == "meta" for t in itertools.chain(module.parameters(), module.buffers())):
        raise ConfigError(
            f"{type(module).__name__} is on the meta device and its forward needs tensor values that meta "
            f"tensors do not have ({str(exc).splitlines()[0][:160]}); build it with real weights to analyse "
            "it on the cpu, or leave out the input that needs them (e.g. a Hugging Face attention_mask "
            "with no padding)"
        ) from exc


def is_data_dependent_error(exc: BaseException) -> bool:
    """Whether a failure on meta tensors comes from an op that needs real values
    (``.item()``, ``nonzero``, boolean masks), so a CPU run can succeed."""
    text = str(exc)
    return any(k in text for k in ("meta tensor", "meta_nonzero", "data-dependent", "on meta", "'meta'", "Meta"))
