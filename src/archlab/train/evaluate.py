"""Evaluation of a model on a split with a task's loss and metrics, and batch prediction."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from archlab.data.base import Split
from archlab.train.distributed import Dist
from archlab.train.precision import autocast
from archlab.train.task_protocol import TaskProtocol


def iter_batches(split: Split, batch_size: int, rows: slice | None = None) -> Iterator[Split]:
    """In-order batches of ``split`` (or of its ``rows``) by slicing; a streamed split's batches
    are read from disk as they come. Whole-graph splits come as one batch."""
    if not split.indexable:
        yield split
        return
    lo, hi = (0, len(split)) if rows is None else (rows.start, rows.stop)
    for start in range(lo, hi, batch_size):
        yield split.take(slice(start, min(start + batch_size, hi)))


@torch.no_grad()
def evaluate_split(
    model: nn.Module,
    task: TaskProtocol,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    prefix: str = "val",
    dist: Dist | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on ``split``, keyed ``{prefix}_{name}``.

    Everything accumulates on the device; there is one host sync per metric at the end. Under
    data-parallel training (``dist`` active) each rank evaluates its contiguous shard and the sums
    are all-reduced (torchmetrics objects synchronise themselves in ``compute``), so every rank
    gets the metrics of the whole split.
    """
    dist = dist or Dist()
    rows = dist.shard(len(split)) if dist.active and split.indexable else None
    was_training = model.training
    model.eval()
    metrics = task.make_metrics(device)
    loss_sum = torch.zeros((), device=device)
    count = 0
    extras: dict[str, torch.Tensor] = {}
    try:
        for batch in iter_batches(split.to(device), batch_size, rows):
            batch = batch.to(device)  # a streamed split's batches are read on the host
            with autocast(device, precision):
                out = task.forward(model, batch)
            loss = task.batch_loss(out, batch)
            n = len(batch)
            loss_sum += loss.detach().float() * n
            count += n
            task.update_metrics(metrics, out, batch)
            for k, v in task.eval_extras(out, batch).items():
                extras[k] = extras[k] + v if k in extras else v
    finally:
        model.train(was_training)
    if rows is not None:  # the shards' sums -> the whole split's
        keys = sorted(extras)
        parts = [loss_sum.reshape(1), torch.tensor([float(count)], device=device)]
        parts += [extras[k].float().reshape(-1) for k in keys]
        flat = dist.all_reduce_sum(torch.cat(parts))
        loss_sum, count = flat[0], int(flat[1])
        offset = 2
        for k in keys:
            n = extras[k].numel()
            extras[k] = flat[offset : offset + n].reshape(extras[k].shape)
            offset += n
    result = {f"{prefix}_loss": float(loss_sum) / max(1, count)}
    for name, metric in metrics.items():
        value = metric.compute()
        result[f"{prefix}_{name}"] = float(value.float().mean()) if value.numel() > 1 else float(value)
    for name, value in task.finish_extras(extras).items() if extras else ():
        result[f"{prefix}_{name}"] = float(value)
    return result


@torch.no_grad()
def predict_split(
    model: nn.Module, task, inputs: tuple[torch.Tensor, ...], *, batch_size: int, device: torch.device
) -> torch.Tensor:
    """The task's predictions for ``inputs`` (batched, on CPU)."""
    model.eval()
    split = Split(inputs=tuple(t.to(device) for t in inputs))
    outs = [task.predict(model, b.inputs).cpu() for b in iter_batches(split, batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def metric_mode(task: TaskProtocol | None, name: str) -> str:
    """``"min"`` or ``"max"`` for metric ``name`` (``val_accuracy`` -> max, ``val_loss`` -> min)."""
    base = name.split("_", 1)[1] if name.startswith(("val_", "test_", "train_")) else name
    if base == "loss":
        return "min"
    try:
        metric = task.make_metrics(torch.device("cpu")).get(base)
    except Exception:  # pragma: no cover - a task whose metrics need set-up data
        metric = None
    if metric is not None and getattr(metric, "higher_is_better", None) is not None:
        return "max" if metric.higher_is_better else "min"
    lower = ("loss", "mae", "mse", "rmse", "perplexity", "bits", "nats", "ece", "error")
    return "min" if any(s in base for s in lower) else "max"
