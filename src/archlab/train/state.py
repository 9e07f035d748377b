"""Run directories, crash-safe checkpoints and the state that makes a resume exact.

A run directory holds::

    config.yaml          model + data + task + train config
    data_info.json       the DataBundle's facts (classes, vocabulary, normalisation stats)
    metrics.jsonl        one JSON line per logged step and per evaluation
    last/  best/         checkpoints (below)
    curves.png           loss and metric curves
    final_metrics.json   metrics of the finished run

A checkpoint directory holds the model (``config.json`` + ``model.safetensors`` via
:mod:`archlab.checkpoint`), ``state.safetensors`` (optimizer tensors, RNG states, the data
order) and ``state.json`` (optimizer hyper-parameters, scheduler, scaler, step, epoch, early
stopping, python RNG), then ``COMPLETE``, written last. It is written into a temp directory and
swapped in with renames; a directory without ``COMPLETE`` is ignored, so a SIGKILL at any moment
leaves the previous complete checkpoint usable. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.checkpoint import load_state_into, save, tensors_from_bytes, tensors_to_bytes
from archlab.errors import CheckpointError
from archlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text

COMPLETE = "COMPLETE"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


@dataclass
class TrainState:
    """Where the loop is: counters, data order, early stopping and running loss sums."""

    step: int = 0                 # optimizer steps done
    micro: int = 0                # micro-batches done (grad accumulation)
    epoch: int = 0                # epochs started and finished
    pos: int = 0                  # next batch index within the current epoch
    perm: torch.Tensor | None = None   # this epoch's sample order
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


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE).is_file()


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` with ``tmp``: final -> final.old, tmp -> final, drop final.old."""
    old = final.with_name(final.name + ".old")
    if old.exists() and final.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old.exists():
        shutil.rmtree(old)


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
) -> Path:
    """Write a complete checkpoint to ``directory`` crash-safely (temp dir, marker, rename)."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise CheckpointError(f"refusing to write a checkpoint with non-finite weights ({name})")
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save(model, tmp)
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
        atomic_write_bytes(tmp / STATE_TENSORS, tensors_to_bytes({k: v.detach().cpu() for k, v in tensors.items()}))
    atomic_write_json(tmp / STATE_JSON, meta)
    atomic_write_json(tmp / COMPLETE, {"step": state.step if state is not None else None})
    _swap_in(tmp, directory)
    return directory


def find_checkpoint(run_dir: Path, name: str = "last") -> Path | None:
    """The complete checkpoint ``name`` (or its ``.old`` twin left by a kill mid-swap), if any."""
    best: tuple[int, Path] | None = None
    for cand in (run_dir / name, run_dir / f"{name}.old"):
        if cand.is_dir() and is_complete(cand):
            try:
                step = json.loads((cand / COMPLETE).read_text())["step"] or 0
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if best is None or step > best[0]:
                best = (step, cand)
    return None if best is None else best[1]


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory / STATE_JSON} is unreadable ({exc})") from None


def load_model_weights(directory: Path, model: nn.Module) -> None:
    from archlab.checkpoint import WEIGHTS_FILE

    path = directory / WEIGHTS_FILE
    load_state_into(model, tensors_from_bytes(path.read_bytes(), str(path)), str(path))


def restore_checkpoint(
    directory: Path,
    model: nn.Module,
    state: TrainState,
    optimizers: list[torch.optim.Optimizer],
    schedulers: list[Any],
    scaler: Any,
    data_gen: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """Load everything :func:`write_checkpoint` wrote back into live objects."""
    load_model_weights(directory, model)
    meta = read_checkpoint_meta(directory)
    tensors = tensors_from_bytes((directory / STATE_TENSORS).read_bytes(), str(directory / STATE_TENSORS))
    for key, value in meta["train"].items():
        setattr(state, key, value)
    state.perm = tensors["data.perm"].to(device) if "data.perm" in tensors else None
    state.loss_sums = {k[len("loss_sum."):]: v.to(device) for k, v in tensors.items() if k.startswith("loss_sum.")}
    if len(meta["optimizers"]) != len(optimizers):
        raise CheckpointError(
            f"{directory} holds {len(meta['optimizers'])} optimizer states; the task has {len(optimizers)}")
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
    return meta


# -- run directory ---------------------------------------------------------------------------------


class RunDir:
    """Paths and writers of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / "last"

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: dict[str, Any]) -> None:
        import yaml

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        import yaml

        path = self.path / "config.yaml"
        if not path.is_file():
            raise CheckpointError(f"no config.yaml in {self.path} (is it an archlab run directory?)")
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Complete JSON lines of metrics.jsonl (a line torn by a kill is skipped)."""
        if not self.metrics_file.is_file():
            return []
        out = []
        for line in self.metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def clean_partial(self) -> None:
        """Remove what a kill left behind: temp checkpoint dirs, and ``.old`` twins no longer needed."""
        for name in ("last", "best"):
            tmp = self.path / f".{name}.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            old, cur = self.path / f"{name}.old", self.path / name
            if old.exists():
                if is_complete(cur):
                    shutil.rmtree(old)
                else:  # killed mid-swap: the old one is the checkpoint
                    if cur.exists():
                        shutil.rmtree(cur)
                    os.replace(old, cur)

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to ``step`` (those after the resumed checkpoint are redone)."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))


def final_checkpoint(run_dir: Path, saved: dict[str, Any]) -> Path | None:
    """The checkpoint holding the weights a run ended with: best/ when the run restored its best
    weights (``train.restore_best``, the default), else last/; the other one when it is missing."""
    order = ("best", "last") if (saved.get("train") or {}).get("restore_best", True) else ("last", "best")
    return find_checkpoint(run_dir, order[0]) or find_checkpoint(run_dir, order[1])


def load_run(run_dir: str | Path, device: str = "cpu"):
    """(saved config, model with the run's final weights, task by name, checkpoint path) of a run."""
    from archlab.checkpoint import load as load_model
    from archlab.errors import CheckpointError
    from archlab.tasks import get_task

    run = RunDir(run_dir)
    saved = run.read_config()
    ckpt = final_checkpoint(run.path, saved)
    if ckpt is None:
        raise CheckpointError(f"{run_dir} has no complete checkpoint (best/ or last/)")
    model = load_model(ckpt, device=device)
    task = get_task(saved["task"]["name"], **(saved["task"].get("options") or {}))
    return saved, model, task, ckpt
