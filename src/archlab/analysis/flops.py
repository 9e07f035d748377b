"""FLOP counting at the dispatcher level, attributed to modules, with the formulas torch lacks.

The counts follow ``torch.utils.flop_counter`` (the same formula registry, the same
decompositions), so on the meta device the totals agree with ``FlopCounterMode``. On top of it:

- recurrent layers (``nn.RNN``/``nn.LSTM``/``nn.GRU``) are counted by formula from a module hook,
  so the fused CPU kernel (``mkldnn_rnn_layer``, which FlopCounterMode counts as 0) and the meta
  decomposition give the same figure;
- ``_scaled_dot_product_flash_attention_for_cpu`` (SDPA on the CPU, with or without a mask) gets
  the attention formula, which FlopCounterMode lacks;
- ``_embedding_bag`` is counted (one add per gathered element, plus one multiply with
  ``per_sample_weights``);
- any other op that plausibly costs FLOPs (a matmul, conv, recurrent, FFT, linear-algebra or
  custom-namespace op with no formula) is listed as *uncounted*, never silently taken as 0.

Conventions: a multiply-add is 2 FLOPs and 1 MAC. Elementwise, normalisation, activation and
softmax ops are not counted (FlopCounterMode's convention: they are memory-bound and usually a
few percent of a network's arithmetic); their names and call counts are kept separately.
Backward FLOPs are estimated as 2x forward for the counted ops (one product for the input
gradient, one for the weight gradient: the usual "training = 3x forward" rule).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

aten = torch.ops.aten

# Ops that only ask about metadata: FlopCounterMode lets them fall through the same way.
SKIP_OPS = {
    aten.sym_is_contiguous.default if hasattr(aten, "sym_is_contiguous") else None,
    aten.is_contiguous.default,
    aten.is_contiguous.memory_format,
    aten.is_strides_like_format.default,
    aten.is_non_overlapping_and_dense.default,
    aten.size.default,
    aten.sym_size.default,
    aten.stride.default,
    aten.sym_stride.default,
    aten.storage_offset.default,
    aten.sym_storage_offset.default,
    aten.numel.default,
    aten.sym_numel.default,
    aten.dim.default,
    torch.ops.prim.layout.default,
}
SKIP_OPS.discard(None)


def _shape(x: Any):
    return tuple(x.shape) if isinstance(x, torch.Tensor) else x


def _sdpa_cpu_flop(query, key, value, *args, **kwargs) -> int:
    q, k, v = _shape(query), _shape(key), _shape(value)
    if len(q) != 4:  # (..., L, E) with other leading dims: flatten them into the batch
        import math

        lead = math.prod(q[:-2])
        q, k, v = (lead, 1, *q[-2:]), (lead, 1, *k[-2:]), (lead, 1, *v[-2:])
    return sdpa_flop_count(q, k, v)


def _embedding_bag_flop(
    weight,
    indices,
    offsets=None,
    scale_grad_by_freq=False,
    mode=0,
    sparse=False,
    per_sample_weights=None,
    *args,
    **kwargs,
) -> int:
    n, d = indices.numel(), weight.shape[-1]
    return n * d * (2 if per_sample_weights is not None else 1)


# Extra op formulas: packet -> (flops(args, kwargs), macs-per-flop ratio).
_EXTRA: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._embedding_bag: _embedding_bag_flop,
    aten._embedding_bag_forward_only: _embedding_bag_flop,
}
if hasattr(aten, "_scaled_dot_product_fused_attention_overrideable"):
    _EXTRA[aten._scaled_dot_product_fused_attention_overrideable] = _sdpa_cpu_flop
_NO_MAC = {aten._embedding_bag, aten._embedding_bag_forward_only}

_HEAVY_TOKENS = {
    "conv",
    "convolution",
    "mm",
    "bmm",
    "matmul",
    "linear",
    "lstm",
    "gru",
    "rnn",
    "attention",
    "einsum",
    "bag",
    "fft",
    "cdist",
    "tensordot",
    "dot",
    "vdot",
    "mv",
    "addmv",
    "addbmm",
    "ger",
    "outer",
    "cholesky",
    "svd",
    "qr",
    "solve",
    "inverse",
    "det",
    "eig",
    "eigh",
    "lstsq",
    "kron",
}
_HEAVY_PREFIXES = ("conv", "mkldnn", "fbgemm", "linalg", "fft", "cudnn", "miopen", "thnn", "quantized")


def is_costly_op(name: str) -> bool:
    """Whether an op with no formula plausibly does arithmetic worth counting."""
    namespace, _, op = name.partition(".")
    if namespace not in ("aten", "prim", "prims"):
        return True  # a custom or third-party kernel: unknown cost
    op = op.lstrip("_")
    tokens = set(op.split("_"))
    return bool(tokens & _HEAVY_TOKENS) or op.startswith(_HEAVY_PREFIXES)


# ----------------------------------------------------------------------------- module formulas


def _rnn_flops(module: nn.RNNBase, args: tuple, output: Any) -> int:
    """Matmul FLOPs of a (multi-layer, maybe bidirectional, maybe projected) RNN/LSTM/GRU.

    Per layer, direction and time step: ``x W_ih^T`` (in x G) and ``h W_hh^T`` (H_out x G) with
    G = 4H (LSTM), 3H (GRU), H (RNN), plus the LSTM projection (H x P). Each is 2 FLOPs per MAC.
    Biases and gate nonlinearities are elementwise and not counted (as in the decomposition).
    """
    x = args[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = int(x.data.shape[0])  # total tokens over the batch
    else:
        if x.dim() == 2:  # unbatched (T, F)
            steps = int(x.shape[0])
        else:
            steps = int(x.shape[0] * x.shape[1])
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0) or 0
    h_out = proj or hidden
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1) * hidden
    dirs = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        in_size = module.input_size if layer == 0 else h_out * dirs
        per_step = in_size * gates + h_out * gates + (hidden * proj if proj else 0)
        total += 2 * steps * per_step * dirs
    return total


def _rnn_cell_flops(module: nn.Module, args: tuple, output: Any) -> int:
    x = args[0]
    batch = int(x.shape[0]) if x.dim() == 2 else 1
    gates = {nn.LSTMCell: 4, nn.GRUCell: 3}.get(type(module), 1) * module.hidden_size
    return 2 * batch * (module.input_size + module.hidden_size) * gates


MODULE_FORMULAS: dict[type, Callable[[nn.Module, tuple, Any], int]] = {
    nn.RNNBase: _rnn_flops,
    nn.RNNCellBase: _rnn_cell_flops,
}


def register_module_flops(cls: type[nn.Module], fn: Callable[[nn.Module, tuple, Any], int]) -> None:
    """Count ``cls`` by ``fn(module, args, output) -> FLOPs`` instead of by its ops."""
    MODULE_FORMULAS[cls] = fn


def module_formula(module: nn.Module) -> Callable | None:
    for cls in type(module).__mro__:
        if cls in MODULE_FORMULAS:
            return MODULE_FORMULAS[cls]
    return None


# ----------------------------------------------------------------------------- counting mode


class OpSink:
    """What the counting mode reports to: the analysis' module tracker."""

    def add_flops(self, op: str, flops: int, macs: int) -> None: ...
    def add_uncounted(self, op: str) -> None: ...
    def add_ignored(self, op: str) -> None: ...
    def in_formula_scope(self) -> bool:
        return False

    def on_op(self, packet, args, kwargs, out) -> None: ...


def count_op(packet, args, kwargs, out) -> tuple[int, int] | None:
    """(flops, macs) of one op, or None when there is no formula."""
    if packet in _EXTRA:
        flops = int(_EXTRA[packet](*args, **kwargs))
        return flops, (
            flops // 2 if packet not in _NO_MAC else (flops // 2 if len(args) > 6 and args[6] is not None else 0)
        )
    if packet in flop_registry:
        flops = int(flop_registry[packet](*args, **kwargs, out_val=out))
        return flops, flops // 2
    return None


class CountingMode(TorchDispatchMode):
    """Counts FLOPs of every op that reaches the dispatcher and reports them to ``sink``."""

    supports_higher_order_operators = True

    def __init__(self, sink: OpSink):
        super().__init__()
        self.sink = sink

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SKIP_OPS:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        packet = func._overloadpacket
        # Decompose what can be decomposed, exactly as FlopCounterMode does, so totals agree.
        if packet not in _EXTRA and func is not torch.ops.prim.device.default:
            with self:
                r = func.decompose(*args, **kwargs)
                if r is not NotImplemented:
                    return r
        out = func(*args, **kwargs)
        self.sink.on_op(packet, args, kwargs, out)
        if self.sink.in_formula_scope():
            return out
        counted = count_op(packet, args, kwargs, out)
        name = str(packet)
        if counted is not None:
            self.sink.add_flops(name, *counted)
        elif is_costly_op(name):
            self.sink.add_uncounted(name)
        else:
            self.sink.add_ignored(name)
        return out


_PRETTY = re.compile(r"^aten\.")


def short_op(name: str) -> str:
    return _PRETTY.sub("", name)
