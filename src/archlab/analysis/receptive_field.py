"""Receptive field of convolutional and TCN models, followed through the actual data flow.

Each tensor carries, per spatial dimension, its receptive field ``r`` (input positions that can
influence one output position) and jump ``j`` (input positions between neighbouring outputs).
A convolution or pooling with kernel ``k``, stride ``s`` and dilation ``d`` maps
``r' = r + (k - 1) d j`` and ``j' = j s`` (Araujo et al., "Computing receptive fields of
convolutional neural networks", Distill 2019). Ops that merge tensors (a residual add, a concat)
take the largest field of their inputs, so branches such as ResNet shortcuts are handled. A
model's own ``receptive_field`` attribute (e.g. a TCN's) takes precedence when present.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

_CONV = {aten.convolution, aten._convolution}
_POOL = {
    aten.max_pool1d,
    aten.max_pool2d,
    aten.max_pool3d,
    aten.max_pool1d_with_indices,
    aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices,
    aten.avg_pool1d,
    aten.avg_pool2d,
    aten.avg_pool3d,
}
_SPATIAL_MODULES = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


@dataclass
class ReceptiveField:
    """Receptive field of the deepest spatial feature map, per spatial dimension."""

    size: tuple[int, ...]
    jump: tuple[float, ...]
    source: str  # "traced" or "model attribute"

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "jump": list(self.jump), "source": self.source}


def has_spatial_layers(model: nn.Module) -> bool:
    return any(isinstance(m, _SPATIAL_MODULES) for m in model.modules())


def from_model_attribute(model: nn.Module) -> ReceptiveField | None:
    value = getattr(model, "receptive_field", None)
    if callable(value):
        value = value()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ReceptiveField((int(value),), (1.0,), "model attribute")
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
        return ReceptiveField(tuple(value), tuple(1.0 for _ in value), "model attribute")
    return None


def _tup(v, n: int, default: int) -> tuple[int, ...]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        return (default,) * n
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v


def _fit_rank(r: tuple, j: tuple, n: int) -> tuple[tuple, tuple]:
    """(r, j) for an op with ``n`` spatial dims. PyTorch runs 1-D pooling as 2-D pooling on an
    input unsqueezed to (B, C, 1, L) and squeezes the result back, so a 1-D field gains or loses
    a leading unit dimension on the way; anything else starts afresh."""
    if len(r) == n:
        return r, j
    if len(r) == n - 1:
        return (1, *r), (1.0, *j)
    if len(r) == n + 1 and r[0] == 1:
        return r[1:], j[1:]
    return (1,) * n, (1.0,) * n


class RFTracker:
    """Follows (r, j) through the ops of one forward pass."""

    def __init__(self) -> None:
        self._info: dict[int, tuple[weakref.ref, tuple, tuple]] = {}
        self.best: tuple[tuple, tuple] | None = None

    def _get(self, t: torch.Tensor):
        entry = self._info.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1], entry[2]

    def _set(self, t: Any, r: tuple, j: tuple) -> None:
        if isinstance(t, torch.Tensor):
            self._info[id(t)] = (weakref.ref(t), r, j)

    def mark_inputs(self, tensors) -> None:
        for t in tree_leaves(tensors):
            if isinstance(t, torch.Tensor):
                self._set(t, (), ())

    def on_op(self, packet, args, kwargs, out) -> None:
        if packet in _CONV or packet in _POOL:
            x = args[0]
            info = self._get(x) if isinstance(x, torch.Tensor) else None
            n = x.dim() - 2 if packet in _CONV else (x.dim() - 2 if x.dim() >= 3 else x.dim() - 1)
            n = max(n, 1)
            r, j = _fit_rank(*(info if info is not None else ((), ())), n)
            if packet in _CONV:
                k = tuple(args[1].shape[2:])
                stride, dil, transposed = _tup(args[3], n, 1), _tup(args[5], n, 1), bool(args[6])
            else:
                name = str(packet)
                k = _tup(args[1], n, 1)
                stride = _tup(args[2] if len(args) > 2 else None, n, 0)
                stride = tuple(s if s else kk for s, kk in zip(stride, k))
                dil = _tup(args[4] if "max" in name and len(args) > 4 else None, n, 1)
                transposed = False
            if transposed:
                j2 = tuple(jj / s for jj, s in zip(j, stride))
                r2 = tuple(int(rr + (kk - 1) * d * jj) for rr, kk, d, jj in zip(r, k, dil, j2))
            else:
                j2 = tuple(jj * s for jj, s in zip(j, stride))
                r2 = tuple(int(rr + (kk - 1) * d * jj) for rr, kk, d, jj in zip(r, k, dil, j))
            for o in tree_leaves(out):
                self._set(o, r2, j2)
            if self.best is None or _prod(r2) >= _prod(self.best[0]):
                self.best = (r2, j2)
            return
        # Anything else carries the largest field of its inputs through.
        infos = [self._get(a) for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        infos = [i for i in infos if i is not None and i[0]]
        if not infos:
            return
        r, j = max(infos, key=lambda i: _prod(i[0]))
        for o in tree_leaves(out):
            if isinstance(o, torch.Tensor) and o.dim() >= len(r):
                self._set(o, r, j)

    def result(self) -> ReceptiveField | None:
        if self.best is None:
            return None
        return ReceptiveField(tuple(self.best[0]), tuple(float(x) for x in self.best[1]), "traced")


def _prod(t) -> int:
    p = 1
    for v in t:
        p *= v
    return p
