"""``archlab.summary``: one pass over a model on meta tensors gives every per-layer figure.

One forward pass runs under three instruments at once: module hooks (the module stack, shapes,
call counts), a dispatcher-level FLOP counter (:mod:`archlab.analysis.flops`) and saved-tensor
hooks (:mod:`archlab.analysis.memory`). On the default ``device="meta"`` no weight or
activation is allocated, so a 65 B-parameter decoder is analysed in seconds on a laptop.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from archlab.analysis import flops as F
from archlab.analysis._prepare import (
    batch_of, check_cpu_rerun_possible, is_data_dependent_error, make_inputs, preserved_state, resolve_model,
)
from archlab.analysis.memory import MemoryEstimate, SavedTensorMeter, dtype_name
from archlab.analysis.receptive_field import (
    ReceptiveField, RFTracker, from_model_attribute, has_spatial_layers,
)

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
class ModelSummary:
    """Result of :func:`summary`. Render with ``to_markdown()``, ``to_html()``, ``to_json()``,
    ``to_rich()``; ``str()`` gives a plain-text table.

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
        from archlab.analysis.render import summary_to_dict

        return summary_to_dict(self)

    def to_json(self, indent: int = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        from archlab.analysis.render import summary_markdown

        return summary_markdown(self)

    def to_html(self) -> str:
        from archlab.analysis.render import summary_html

        return summary_html(self)

    def to_rich(self):
        from archlab.analysis.render import summary_rich

        return summary_rich(self)

    def __str__(self) -> str:
        from archlab.analysis.render import summary_text

        return summary_text(self)


class _Record:
    __slots__ = ("name", "type", "depth", "calls", "inputs", "outputs", "flops", "macs", "self_flops",
                 "output_bytes", "saved_bytes", "uncounted", "formula")

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
        notes.append(f"ran on cpu: the model has data-dependent ops that meta tensors cannot run ({str(exc).splitlines()[0][:120]})")
        log.info("summary: %s", notes[-1])
        return _summary(model, input, input_shape, depth, "cpu", batch_size, overrides, notes)


def _summary(model, input, input_shape, depth, device, batch_size, overrides, notes) -> ModelSummary:
    module, name, private = resolve_model(model, device, overrides)
    args, kwargs = make_inputs(module, input, input_shape, batch_size, device)
    batch = batch_of(args, kwargs)

    rf_attr = from_model_attribute(module)
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

    total, trainable, pbytes = _param_stats(module)
    buffer_bytes = sum(b.numel() * b.element_size() for b in module.buffers())
    by_dtype: Counter = Counter()
    for p in module.parameters():
        by_dtype[dtype_name(p.dtype)] += p.numel()

    # Containers that are iterated, never called (ModuleList/ModuleDict): sum their children.
    for m, rec in reversed(list(tracker.records.items())):
        if rec.calls == 0 and isinstance(m, (nn.ModuleList, nn.ModuleDict)):
            kids = [tracker.records[c] for c in m.children()]
            rec.flops, rec.macs = sum(k.flops for k in kids), sum(k.macs for k in kids)
            rec.saved_bytes = sum(k.saved_bytes for k in kids)
            rec.calls = max((k.calls for k in kids), default=0)
            for k in kids:
                rec.uncounted |= k.uncounted
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
        rows.append(LayerRow(
            name=rec.name or name, type=rec.type, depth=rec.depth, calls=rec.calls,
            input_shapes=rec.inputs or [], output_shapes=rec.outputs or [],
            params=p_total, trainable_params=p_train, param_bytes=p_bytes,
            flops=rec.flops, macs=rec.macs, backward_flops=2 * rec.flops,
            output_bytes=rec.output_bytes, saved_bytes=rec.saved_bytes, uncounted=sorted(rec.uncounted),
        ))
    root = tracker.records[module]
    if tracker.uncounted:
        notes.append("ops with no FLOP formula (not included in totals): "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(tracker.uncounted.items())))
    memory = MemoryEstimate(
        params=total, trainable=trainable, buffer_bytes=buffer_bytes, param_bytes_actual=pbytes + buffer_bytes,
        dtype_of_model=dtype_name(next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)),
        batch_size=batch, activation_bytes=meter.total, output_bytes=_nbytes(output),
        params_by_dtype=dict(by_dtype),
    )
    return ModelSummary(
        model=name, device=device, batch_size=batch, depth=depth,
        input_shapes=_shapes((args, kwargs)), output_shapes=_shapes(output), rows=rows,
        total_params=total, trainable_params=trainable, param_bytes=pbytes,
        flops=root.flops, macs=root.macs, backward_flops=2 * root.flops,
        by_type=dict(sorted(by_type.items(), key=lambda kv: (-kv[1].flops, -kv[1].params))),
        flops_by_op=dict(tracker.flops_by_op.most_common()), uncounted=dict(tracker.uncounted),
        not_counted_by_convention=dict(tracker.ignored.most_common()), memory=memory,
        receptive_field=rf_attr or (rf.result() if rf is not None else None), notes=notes,
    )
