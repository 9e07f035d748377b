"""Crash-safe checkpoints and the state that makes a resume exact.

The run-directory layout is :mod:`archlab.rundir`. A checkpoint directory holds the model
(``config.json`` + ``model.safetensors`` + ``manifest.json`` via :mod:`archlab.checkpoint`),
``state.safetensors`` (optimizer tensors, RNG states, the data order) and ``state.json``
(optimizer hyper-parameters, scheduler, scaler, step, epoch, early stopping, python RNG), then
``COMPLETE``, written last, holding the step and the SHA-256 of every other file.

The protocol, in the order it is done (:func:`write_checkpoint`, :func:`_swap_in`):

1. write everything into ``.NAME.tmp/``, each file atomically, hashing the bytes as they go;
2. write ``COMPLETE`` with the digests: a directory without it is ignored;
3. rename ``NAME/`` -> ``NAME.old/``, ``.NAME.tmp/`` -> ``NAME/``, then ``NAME.old/`` ->
   ``NAME.prev/`` (the previous checkpoint is kept as a fallback).

A SIGKILL at any moment leaves at least one complete checkpoint; a reader
(:func:`archlab.rundir.find_checkpoint`) takes the newest of ``NAME``, ``NAME.old`` and
``NAME.prev`` whose files match their digests, so a corrupted checkpoint falls back to the one
before it. Reading parses ``state.json`` against the fields this module wrote, so a malformed
or tampered file is a :class:`CheckpointError` naming the file and the field. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.checkpoint import (
    WEIGHTS_FILE,
    check_finite,
    load_state_into,
    tensors_from_bytes,
    tensors_to_bytes,
    write_model,
)
from archlab.errors import CheckpointError
from archlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from archlab.rundir import COMPLETE, verify_checkpoint

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


@dataclass
class TrainState:
    """Where the loop is: counters, data order, early stopping and running loss sums."""

    step: int = 0  # optimizer steps done
    micro: int = 0  # micro-batches done (grad accumulation)
    epoch: int = 0  # epochs started and finished
    pos: int = 0  # next batch index within the current epoch
    perm: torch.Tensor | None = None  # this epoch's sample order
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    loss_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_count: int = 0

    def scalars(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("perm", "loss_sums"):
            d.pop(k)
        return d


# -- RNG ----------------------------------------------------------------------------------------


def rng_state(data_gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states of python, numpy, torch (CPU and CUDA) and the data order, as tensors + JSON."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.data": data_gen.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, pstate, gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(pstate), gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    data_gen.set_state(tensors["rng.data"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, pstate, gauss = meta["python"]
    random.setstate((version, tuple(pstate), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- optimizer / scheduler state without pickle ----------------------------------------------------


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested state into ``tensors``; leave ``{"__tensor__": key}``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split_tensors(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join_tensors(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


# -- checkpoints ----------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` with ``tmp``: final -> final.old, tmp -> final, final.old -> final.prev."""
    old = final.with_name(final.name + ".old")
    prev = final.with_name(final.name + ".prev")
    junk = final.with_name(f".{final.name}.prev.tmp")  # a replaced .prev, deleted last
    if junk.exists():
        shutil.rmtree(junk)
    if old.exists() and final.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old.exists():
        if prev.exists():
            os.replace(prev, junk)
        os.replace(old, prev)
        _fsync_dir(final.parent)
        if junk.exists():
            shutil.rmtree(junk)


def write_checkpoint(
    directory: Path,
    model: nn.Module,
    *,
    state: TrainState | None = None,
    optimizers: list[torch.optim.Optimizer] = (),
    schedulers: list[Any] = (),
    scaler: Any = None,
    data_gen: torch.Generator | None = None,
    extra: dict[str, Any] | None = None,
    aug_gen: torch.Generator | None = None,
    rank_rng: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a complete checkpoint to ``directory`` crash-safely (temp dir, marker, rename).

    ``aug_gen`` is the batch augmenter's RNG (:mod:`archlab.train.augment`), when augmenting;
    ``rank_rng`` the other ranks' RNG states of a data-parallel run (``rng.torch.rank1``, ...).
    """
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise CheckpointError(f"refusing to write a checkpoint with non-finite weights ({name})")
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    digests = write_model(model, tmp)
    meta: dict[str, Any] = {"extra": extra or {}}
    if state is not None:
        tensors: dict[str, torch.Tensor] = {}
        meta["train"] = state.scalars()
        meta["optimizers"] = [_split_tensors(o.state_dict(), f"opt{i}", tensors) for i, o in enumerate(optimizers)]
        meta["schedulers"] = [None if s is None else s.state_dict() for s in schedulers]
        meta["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        if state.perm is not None:
            tensors["data.perm"] = state.perm
        for k, v in state.loss_sums.items():
            tensors[f"loss_sum.{k}"] = v.detach()
        if data_gen is not None:
            rng_t, meta["rng"] = rng_state(data_gen)
            tensors.update(rng_t)
        if aug_gen is not None:
            tensors["rng.augment"] = aug_gen.get_state()
        tensors.update(rank_rng or {})
        data = tensors_to_bytes({k: v.detach().cpu() for k, v in tensors.items()})
        atomic_write_bytes(tmp / STATE_TENSORS, data)
        digests[STATE_TENSORS] = sha256_bytes(data)
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write_text(tmp / STATE_JSON, text)
    digests[STATE_JSON] = sha256_bytes(text.encode("utf-8"))
    atomic_write_json(tmp / COMPLETE, {"step": state.step if state is not None else None, "sha256": digests})
    _swap_in(tmp, directory)
    return directory


# -- reading --------------------------------------------------------------------------------------

_SCALAR_KINDS = {  # TrainState annotation -> (check, what the message says is expected)
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "int | None": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer or null"),
    "float | None": (
        lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
        "a number or null",
    ),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}


def _expect(ok: bool, path: Path, field_name: str, expected: str, value: Any) -> None:
    if not ok:
        raise CheckpointError(f"{path}: field {field_name!r} must be {expected}; got {value!r:.60}")


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    """Parse ``state.json`` and check the types of what a resume reads from it.

    Raises:
        CheckpointError: the file is missing, not UTF-8 JSON, or a field has the wrong type
            (naming the file and the field, e.g. ``'train.step' must be an integer >= 0``).
    """
    path = directory / STATE_JSON
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not UTF-8 JSON ({exc})") from None
    _expect(isinstance(meta, dict), path, "<top level>", "a mapping", meta)
    _expect(isinstance(meta.get("extra", {}), dict), path, "extra", "a mapping", meta.get("extra"))
    if "train" not in meta:
        return meta  # a weights-only checkpoint (best/)
    train = meta["train"]
    _expect(isinstance(train, dict), path, "train", "a mapping", train)
    for f in fields(TrainState):
        if f.name in ("perm", "loss_sums"):
            continue
        _expect(f.name in train, path, f"train.{f.name}", "present", None)
        check, expected = _SCALAR_KINDS[str(f.type)]
        _expect(check(train[f.name]), path, f"train.{f.name}", expected, train[f.name])
    for key in ("optimizers", "schedulers"):
        _expect(isinstance(meta.get(key), list), path, key, "a list", meta.get(key))
    for i, o in enumerate(meta["optimizers"]):
        _expect(isinstance(o, dict) and "__dict__" in o, path, f"optimizers.{i}", "an optimizer state", o)
    _expect(
        meta.get("scaler") is None or isinstance(meta["scaler"], dict),
        path,
        "scaler",
        "a mapping or null",
        meta.get("scaler"),
    )
    rng = meta.get("rng")
    _expect(
        isinstance(rng, dict)
        and isinstance(rng.get("numpy"), list)
        and len(rng["numpy"]) == 4
        and isinstance(rng.get("python"), list)
        and len(rng["python"]) == 3
        and isinstance(rng["python"][1], list),
        path,
        "rng",
        "the numpy and python RNG states",
        rng,
    )
    return meta


def load_model_weights(directory: Path, model: nn.Module, *, allow_nonfinite: bool = False) -> None:
    """Fill ``model`` with a checkpoint's weights (the caller verified the checkpoint)."""
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {WEIGHTS_FILE}")
    state = tensors_from_bytes(path.read_bytes(), str(path))
    if not allow_nonfinite:
        check_finite(state, str(path))
    load_state_into(model, state, str(path))


def restore_checkpoint(
    directory: Path,
    model: nn.Module,
    state: TrainState,
    optimizers: list[torch.optim.Optimizer],
    schedulers: list[Any],
    scaler: Any,
    data_gen: torch.Generator,
    device: torch.device,
    aug_gen: torch.Generator | None = None,
    rank: int = 0,
) -> dict[str, Any]:
    """Load everything :func:`write_checkpoint` wrote back into live objects.

    In a data-parallel run, ``rank`` picks this process's torch RNG states (``rng.torch.rankN``,
    ``rng.cuda.rankN``) when the checkpoint holds them; rank 0's are the plain ones.

    Raises:
        CheckpointError: the checkpoint does not verify, lacks training state, or holds state
            that does not fit these objects; the message names the file.
    """
    verify_checkpoint(directory)
    meta = read_checkpoint_meta(directory)
    if "train" not in meta:
        raise CheckpointError(f"{directory / STATE_JSON} holds no training state (a weights-only checkpoint)")
    load_model_weights(directory, model)
    source = directory / STATE_TENSORS
    if not source.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {STATE_TENSORS}")
    tensors = tensors_from_bytes(source.read_bytes(), str(source))
    needed = ("rng.torch", "rng.data", "rng.numpy") + (("rng.augment",) if aug_gen is not None else ())
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise CheckpointError(f"{source} lacks the RNG tensors {missing}")
    if len(meta["optimizers"]) != len(optimizers):
        raise CheckpointError(
            f"{directory} holds {len(meta['optimizers'])} optimizer states; the task has {len(optimizers)}"
        )
    for key, value in meta["train"].items():
        setattr(state, key, value)
    state.perm = tensors["data.perm"].to(device) if "data.perm" in tensors else None
    state.loss_sums = {k[len("loss_sum.") :]: v.to(device) for k, v in tensors.items() if k.startswith("loss_sum.")}
    try:
        for opt, ostate in zip(optimizers, meta["optimizers"]):
            sd = _join_tensors(ostate, tensors)
            sd["state"] = {int(k): v for k, v in sd["state"].items()}
            opt.load_state_dict(sd)
        for sched, sstate in zip(schedulers, meta["schedulers"]):
            if sched is not None and sstate is not None:
                sched.load_state_dict(sstate)
        if scaler is not None and meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        set_rng_state(tensors, meta["rng"], data_gen)
        if rank and f"rng.torch.rank{rank}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch.rank{rank}"])
        if rank and f"rng.cuda.rank{rank}" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[f"rng.cuda.rank{rank}"])
        if aug_gen is not None:
            aug_gen.set_state(tensors["rng.augment"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise CheckpointError(
            f"{directory}: the optimizer, scheduler or RNG state does not fit this run ({type(exc).__name__}: {exc})"
        ) from None
    return meta
