"""``archlab.summary``: one pass over a model on meta tensors gives every per-layer figure.

One forward pass runs under three instruments at once: module hooks (the module stack, shapes,
call counts), a dispatcher-level FLOP counter (:mod:`archlab.analysis.flops`) and saved-tensor
hooks (:mod:`archlab.analysis.memory`). On the default ``device="meta"`` no weight or
activation is allocated, so a 65 B-parameter decoder is analysed in seconds on a laptop.

JSON schema (``schema_version`` 1; keys are only ever added, never renamed, within a version)::

    {
      "schema_version": 1,
      "model": str, "device": "meta"|"cpu", "batch_size": int, "depth": int,
      "input_shapes": [[int]], "output_shapes": [[int]],
      "totals": {"params": int, "trainable_params": int, "param_bytes": int,
                 "flops": int, "macs": int, "backward_flops": int,
                 "activation_bytes": int},          # saved for backward at batch_size
      "rows": [{"name": str, "type": str, "depth": int, "calls": int,
                "input_shapes": [[int]], "output_shapes": [[int]],
                "params": int, "trainable_params": int, "param_bytes": int,
                "flops": int, "macs": int, "backward_flops": int,
                "output_bytes": int, "saved_bytes": int, "uncounted": [str]}],
      "by_type": {type: {"count": int, "params": int, "flops": int}},
      "flops_by_op": {op: int},
      "uncounted": {op: calls},                      # ops that may cost FLOPs but have no formula
      "not_counted_by_convention": {op: calls},      # elementwise/normalisation/softmax ops
      "memory": {... MemoryEstimate fields, "param_bytes": {"fp32"|"fp16"|"bf16"|"int8": int},
                 "gradient_bytes_fp32": int, "optimizer_bytes": {"sgd"|"sgd_momentum"|"adam": int},
                 "training_peak_fp32_adam": int, "training_peak_bf16_adam": int},
      "receptive_field": null | {"size": [int], "jump": [float], "source": str},
      "notes": [str]
    }

All FLOP figures count a multiply-add as 2 FLOPs; ``macs`` counts it as 1.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from archlab.analysis import flops as F
from archlab.analysis._prepare import (
    batch_of,
    check_cpu_rerun_possible,
    is_data_dependent_error,
    make_inputs,
    preserved_state,
    resolve_model,
)
from archlab.analysis.memory import MemoryEstimate, SavedTensorMeter, dtype_name
from archlab.analysis.receptive_field import (
    ReceptiveField,
    RFTracker,
    from_model_attribute,
    has_spatial_layers,
)
from archlab.display import NotebookDisplay

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


@dataclass
class LayerRow:
    """One module of the model (inclusive of its submodules)."""

    name: str
    type: str
    depth: int
    calls: int
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    params: int
    trainable_params: int
    param_bytes: int
    flops: int
    macs: int
    backward_flops: int
    output_bytes: int
    saved_bytes: int
    uncounted: list[str] = field(default_factory=list)


@dataclass
class TypeTotals:
    """All modules of one type, each counted for its own (non-child) parameters and ops."""

    count: int = 0
    params: int = 0
    flops: int = 0


@dataclass
class ModelSummary(NotebookDisplay):
    """Result of :func:`summary`: plain data. Render it with ``archlab.render(s, "rich"|"md"|"html"|"json"|"text")``.

    FLOPs count a multiply-add as 2 (``flops``) and separately as 1 MAC (``macs``).
    """

    model: str
    device: str
    batch_size: int
    depth: int
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    param_bytes: int
    flops: int
    macs: int
    backward_flops: int
    by_type: dict[str, TypeTotals]
    flops_by_op: dict[str, int]
    uncounted: dict[str, int]
    not_counted_by_convention: dict[str, int]
    memory: MemoryEstimate
    receptive_field: ReceptiveField | None = None
    notes: list[str] = field(default_factory=list)

    # memory shortcuts
    def fits(self, budget_gb: float, **kwargs: Any) -> bool:
        """See :meth:`MemoryEstimate.fits`."""
        return self.memory.fits(budget_gb, **kwargs)

    def max_batch_size(self, budget_gb: float, **kwargs: Any) -> int:
        """See :meth:`MemoryEstimate.max_batch_size`."""
        return self.memory.max_batch_size(budget_gb, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (schema in this module's docstring)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "depth": self.depth,
            "input_shapes": self.input_shapes,
            "output_shapes": self.output_shapes,
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "param_bytes": self.param_bytes,
                "flops": self.flops,
                "macs": self.macs,
                "backward_flops": self.backward_flops,
                "activation_bytes": self.memory.activation_bytes,
            },
            "rows": [asdict(r) for r in self.rows],
            "by_type": {k: asdict(v) for k, v in self.by_type.items()},
            "flops_by_op": dict(self.flops_by_op),
            "uncounted": dict(self.uncounted),
            "not_counted_by_convention": dict(self.not_counted_by_convention),
            "memory": self.memory.to_dict(),
            "receptive_field": self.receptive_field.to_dict() if self.receptive_field else None,
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        return (
            f"ModelSummary({self.model!r}, params={self.total_params:,}, flops={self.flops:,}, "
            f"batch_size={self.batch_size}, rows={len(self.rows)})"
        )


class _Record:
    __slots__ = (
        "name",
        "type",
        "depth",
        "calls",
        "inputs",
        "outputs",
        "flops",
        "macs",
        "self_flops",
        "output_bytes",
        "saved_bytes",
        "uncounted",
        "formula",
    )

    def __init__(self, name: str, type_: str, depth: int):
        self.name, self.type, self.depth = name, type_, depth
        self.calls = 0
        self.inputs: list[list[int]] | None = None
        self.outputs: list[list[int]] | None = None
        self.flops = self.macs = self.self_flops = self.output_bytes = self.saved_bytes = 0
        self.uncounted: set[str] = set()
        self.formula = None


def _shapes(value: Any) -> list[list[int]]:
    return [list(t.shape) for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def _nbytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(value) if isinstance(t, torch.Tensor))


class _Tracker(F.OpSink):
    """Module stack + per-module records, fed by hooks and the counting mode."""

    def __init__(self, model: nn.Module, rf: RFTracker | None):
        self.records: dict[nn.Module, _Record] = {}
        self.order: list[_Record] = []
        self.stack: list[_Record] = []
        self.formula_depth = 0
        self.flops_by_op: Counter = Counter()
        self.uncounted: Counter = Counter()
        self.ignored: Counter = Counter()
        self.rf = rf
        self.handles = []
        for name, m in model.named_modules():
            rec = _Record(name, type(m).__name__, 0 if not name else name.count(".") + 1)
            rec.formula = F.module_formula(m)
            self.records[m] = rec
            self.handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post, with_kwargs=True, always_call=True))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    # hooks
    def _pre(self, module, args, kwargs):
        rec = self.records[module]
        rec.calls += 1
        if rec.inputs is None:
            rec.inputs = _shapes((args, kwargs))
        self.stack.append(rec)
        if rec.formula is not None:
            self.formula_depth += 1

    def _post(self, module, args, kwargs, output):
        rec = self.records[module]
        if not self.stack or self.stack[-1] is not rec:
            return None  # an exception unwound the stack (always_call): leave it alone
        if rec.formula is not None:
            self.formula_depth -= 1
            if self.formula_depth == 0:
                try:
                    n = int(rec.formula(module, args, output))
                except Exception as exc:  # a formula that does not fit this use: say so
                    log.debug("module formula failed for %s: %s", rec.name, exc)
                    self.add_uncounted(f"module:{rec.type}")
                else:
                    self.add_flops(f"formula:{rec.type}", n, n // 2)
                    rec.self_flops += n
        if rec.outputs is None:
            rec.outputs = _shapes(output)
            rec.output_bytes = _nbytes(output)
        self.stack.pop()
        return None

    # counting mode sink
    def in_formula_scope(self) -> bool:
        return self.formula_depth > 0

    def on_op(self, packet, args, kwargs, out) -> None:
        if self.rf is not None:
            self.rf.on_op(packet, args, kwargs, out)

    def add_flops(self, op: str, flops: int, macs: int) -> None:
        self.flops_by_op[op] += flops
        for rec in self.stack:
            rec.flops += flops
            rec.macs += macs
        if self.stack and not op.startswith("formula:"):
            self.stack[-1].self_flops += flops

    def add_uncounted(self, op: str) -> None:
        self.uncounted[op] += 1
        for rec in self.stack:
            rec.uncounted.add(op)

    def add_ignored(self, op: str) -> None:
        self.ignored[op] += 1

    def attribute_saved(self, nbytes: int) -> None:
        for rec in self.stack:
            rec.saved_bytes += nbytes


def _param_stats(module: nn.Module) -> tuple[int, int, int]:
    total = trainable = nbytes = 0
    for p in module.parameters():
        total += p.numel()
        nbytes += p.numel() * p.element_size()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable, nbytes


def summary(
    model: nn.Module | str | os.PathLike,
    input: Any = None,
    *,
    input_shape: Any = None,
    depth: int = 3,
    device: str = "meta",
    batch_size: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> ModelSummary:
    """Layer-by-layer summary: shapes, parameters, FLOPs/MACs, memory, receptive field.

    Args:
        model: an ``nn.Module`` (a ``torch.compile``d one is unwrapped), a registry name, or a
            run directory holding ``config.json``.
        input: forward's arguments: a tensor, a tuple of them, or a dict (any mapping, e.g. a
            Hugging Face tokenizer's ``BatchEncoding``) of keyword arguments.
        input_shape: instead of ``input``: one shape ``(1, 3, 224, 224)`` or a list of shapes
            (float inputs of the model's dtype).
        depth: deepest module level given its own row (the model itself is level 0). FLOPs and
            memory of deeper modules are included in their ancestors' rows.
        device: ``"meta"`` (default: nothing allocated; a real module is copied to meta without
            copying its weights) or ``"cpu"`` (run as given, on real tensors).
        batch_size: batch size of ``example_input`` / ``input_shape``; memory figures are at it.
        overrides: config overrides for a registry name or run directory.

    Returns:
        A :class:`ModelSummary`. A wrong input raises the model's own ShapeError.
    """
    if depth < 0:
        from archlab.errors import ConfigError

        raise ConfigError(f"depth must be >= 0; got {depth}")
    notes: list[str] = []
    try:
        return _summary(model, input, input_shape, depth, device, batch_size, overrides, notes)
    except (NotImplementedError, RuntimeError) as exc:
        if device != "meta" or not is_data_dependent_error(exc):
            raise
        check_cpu_rerun_possible(model, exc)
        notes.append(
            f"ran on cpu: the model has data-dependent ops that meta tensors cannot run ({str(exc).splitlines()[0][:120]})"
        )
        log.info("summary: %s", notes[-1])
        return _summary(model, input, input_shape, depth, "cpu", batch_size, overrides, notes)


def _summary(model, input, input_shape, depth, device, batch_size, overrides, notes) -> ModelSummary:
    """One instrumented forward pass of ``model``, gathered into a :class:`ModelSummary`."""
    module, name, private = resolve_model(model, device, overrides)
    args, kwargs = make_inputs(module, input, input_shape, batch_size, device)
    batch = batch_of(args, kwargs)
    rf_attr = from_model_attribute(module)
    traced = _trace(module, args, kwargs, private, rf_attr)
    tracker = traced.tracker
    total, trainable, pbytes = _param_stats(module)
    _roll_up_containers(tracker)
    rows, by_type = _layer_rows(tracker, name, depth, notes)
    root = tracker.records[module]
    if tracker.uncounted:
        notes.append(
            "ops with no FLOP formula (not included in totals): "
            + ", ".join(f"{k} x{v}" for k, v in sorted(tracker.uncounted.items()))
        )
    return ModelSummary(
        model=name,
        device=device,
        batch_size=batch,
        depth=depth,
        input_shapes=_shapes((args, kwargs)),
        output_shapes=_shapes(traced.output),
        rows=rows,
        total_params=total,
        trainable_params=trainable,
        param_bytes=pbytes,
        flops=root.flops,
        macs=root.macs,
        backward_flops=2 * root.flops,
        by_type=dict(sorted(by_type.items(), key=lambda kv: (-kv[1].flops, -kv[1].params))),
        flops_by_op=dict(tracker.flops_by_op.most_common()),
        uncounted=dict(tracker.uncounted),
        not_counted_by_convention=dict(tracker.ignored.most_common()),
        memory=_memory_estimate(module, (total, trainable, pbytes), batch, traced),
        receptive_field=rf_attr or (traced.rf.result() if traced.rf is not None else None),
        notes=notes,
    )


@dataclass
class _Trace:
    """What the instrumented forward pass recorded."""

    tracker: _Tracker
    meter: SavedTensorMeter
    rf: RFTracker | None  # None: the model declares its receptive field, or has no spatial layers
    output: Any


def _trace(module: nn.Module, args: tuple, kwargs: dict, private: Any, rf_attr: Any) -> _Trace:
    """Run the forward pass once under the module hooks, the FLOP counter and the saved-tensor meter."""
    rf = RFTracker() if rf_attr is None and has_spatial_layers(module) else None
    if rf is not None:
        rf.mark_inputs((args, kwargs))
    tracker = _Tracker(module, rf)
    meter = SavedTensorMeter(module, tracker.attribute_saved)
    try:
        with preserved_state(module, private), torch.enable_grad(), meter, F.CountingMode(tracker):
            output = module(*args, **kwargs)
    finally:
        tracker.remove()
    return _Trace(tracker, meter, rf, output)


def _roll_up_containers(tracker: _Tracker) -> None:
    """Containers that are iterated, never called (ModuleList/ModuleDict): sum their children."""
    for m, rec in reversed(list(tracker.records.items())):
        if rec.calls == 0 and isinstance(m, (nn.ModuleList, nn.ModuleDict)):
            kids = [tracker.records[c] for c in m.children()]
            rec.flops, rec.macs = sum(k.flops for k in kids), sum(k.macs for k in kids)
            rec.saved_bytes = sum(k.saved_bytes for k in kids)
            rec.calls = max((k.calls for k in kids), default=0)
            for k in kids:
                rec.uncounted |= k.uncounted


def _layer_rows(
    tracker: _Tracker, name: str, depth: int, notes: list[str]
) -> tuple[list[LayerRow], dict[str, TypeTotals]]:
    """One row per module down to ``depth``, and totals per module type over every depth."""
    rows: list[LayerRow] = []
    by_type: dict[str, TypeTotals] = defaultdict(TypeTotals)
    for m, rec in tracker.records.items():
        own = sum(p.numel() for p in m.parameters(recurse=False))
        t = by_type[rec.type]
        t.count += 1
        t.params += own
        t.flops += rec.self_flops
        if rec.depth > depth:
            continue
        if rec.calls == 0 and rec.depth > 0:
            notes.append(f"{rec.name} ({rec.type}) was not called in forward")
        p_total, p_train, p_bytes = _param_stats(m)
        rows.append(
            LayerRow(
                name=rec.name or name,
                type=rec.type,
                depth=rec.depth,
                calls=rec.calls,
                input_shapes=rec.inputs or [],
                output_shapes=rec.outputs or [],
                params=p_total,
                trainable_params=p_train,
                param_bytes=p_bytes,
                flops=rec.flops,
                macs=rec.macs,
                backward_flops=2 * rec.flops,
                output_bytes=rec.output_bytes,
                saved_bytes=rec.saved_bytes,
                uncounted=sorted(rec.uncounted),
            )
        )
    return rows, by_type


def _memory_estimate(
    module: nn.Module, param_stats: tuple[int, int, int], batch: int, traced: _Trace
) -> MemoryEstimate:
    """Parameters and buffers by dtype, and the activations the pass saved for backward."""
    total, trainable, pbytes = param_stats
    buffer_bytes = sum(b.numel() * b.element_size() for b in module.buffers())
    by_dtype: Counter = Counter()
    for p in module.parameters():
        by_dtype[dtype_name(p.dtype)] += p.numel()
    return MemoryEstimate(
        params=total,
        trainable=trainable,
        buffer_bytes=buffer_bytes,
        param_bytes_actual=pbytes + buffer_bytes,
        dtype_of_model=dtype_name(next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)),
        batch_size=batch,
        activation_bytes=traced.meter.total,
        output_bytes=_nbytes(traced.output),
        params_by_dtype=dict(by_dtype),
    )
