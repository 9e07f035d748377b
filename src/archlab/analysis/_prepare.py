"""Turn what the user passed (anything :func:`archlab.subject.resolve_subject` takes, a compiled
module too) and an input spec into a module on the analysis device and the arguments for its
forward."""

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
from archlab.subject import resolve_subject

__all__ = ["batch_of", "make_inputs", "meta_copy", "unwrap"]

DEVICES = ("meta", "cpu")


def resolve_model(
    model: nn.Module | str | os.PathLike, device: str, overrides: dict | None = None
) -> tuple[nn.Module, str, bool]:
    """(module ready for analysis, display name, whether it is a private copy we may mutate).

    A name, a saved model or a run (a design: its winner's) is built from its config on
    ``device`` (analysis needs no trained weights); a module is analysed as it is, or as a meta
    copy for ``device='meta'``.
    """
    if device not in DEVICES and not str(device).startswith("cuda"):
        raise ConfigError(f"device must be one of {list(DEVICES)} (or a cuda device); got {device!r}")
    subject = resolve_subject(model, follow_design=True)
    if subject.kind in ("registry", "saved", "run"):
        built = subject.build(device, overrides)
        if subject.kind == "registry":
            return built, str(subject.name), True
        return built, f"{getattr(built, 'registry_name', None)} ({Path(str(model)).name})", True
    module = unwrap(subject.build(device, overrides))  # a module as it is (a design or export: raises)
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
