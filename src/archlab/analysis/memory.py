"""Memory estimates: parameters per dtype, gradients, optimizer state, activations, peaks.

Activations saved for backward are *measured*, not guessed: the forward pass runs under
``torch.autograd.graph.saved_tensors_hooks`` (on meta tensors by default, so nothing is
allocated) and every distinct tensor autograd keeps is added up. Parameters (and views of them)
are not activations and are left out.

The training peak is the usual sum: weights + gradients + optimizer state + saved activations.
It ignores allocator fragmentation, temporary workspaces and the transient gradient of the
largest activation, so treat it as a lower bound with ~10-20% headroom wanted in practice.
Activations are taken to scale linearly with the batch size (true for every layer that treats
samples independently) and with the bytes per element of the training dtype.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from archlab.errors import ConfigError

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp64": 8}
# Extra bytes per trainable parameter kept by each optimizer (fp32 state, as PyTorch keeps it).
OPTIMIZER_STATES = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}
GB = 1024**3


def _check_choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {sorted(choices)}; got {value!r}")
    return value


@dataclass
class MemoryEstimate:
    """Memory needed to hold, run and train a model.

    Attributes:
        params: number of parameters; ``trainable`` of them need gradients.
        param_bytes_actual: bytes of the parameters in their current dtypes (+ buffers).
        dtype_of_model: the dtype the activations were measured in (``fp32`` usually).
        activation_bytes: bytes autograd saves for backward at ``batch_size``.
        output_bytes: bytes of the model's outputs at ``batch_size``.
    """

    params: int
    trainable: int
    buffer_bytes: int
    param_bytes_actual: int
    dtype_of_model: str
    batch_size: int
    activation_bytes: int
    output_bytes: int
    params_by_dtype: dict[str, int] = field(default_factory=dict)

    # -- per-dtype figures
    def param_bytes(self, dtype: str = "fp32") -> int:
        """Bytes of the weights stored in ``dtype`` (fp32, fp16, bf16, int8)."""
        return self.params * DTYPE_BYTES[_check_choice(dtype, DTYPE_BYTES, "dtype")]

    def gradient_bytes(self, dtype: str = "fp32") -> int:
        return self.trainable * DTYPE_BYTES[_check_choice(dtype, DTYPE_BYTES, "dtype")]

    def optimizer_bytes(self, optimizer: str = "adam") -> int:
        """Optimizer state: SGD none, SGD momentum one fp32 copy, Adam/AdamW two."""
        n = OPTIMIZER_STATES[_check_choice(optimizer, OPTIMIZER_STATES, "optimizer")]
        # Mixed precision also keeps an fp32 master copy; counted by training_peak.
        return self.trainable * 4 * n

    def activations_at(self, batch_size: int | None = None, dtype: str | None = None) -> int:
        """Saved-for-backward bytes at ``batch_size`` in ``dtype`` (linear extrapolation)."""
        b = self.batch_size if batch_size is None else batch_size
        scale = 1.0
        if dtype is not None:
            scale = DTYPE_BYTES[_check_choice(dtype, DTYPE_BYTES, "dtype")] / DTYPE_BYTES.get(self.dtype_of_model, 4)
        return int(math.ceil(self.activation_bytes * scale * b / max(self.batch_size, 1)))

    def training_peak(self, batch_size: int | None = None, dtype: str = "fp32", optimizer: str = "adam") -> int:
        """Bytes to train: weights + grads + optimizer state (+ fp32 master weights when
        ``dtype`` is 16-bit) + activations at ``batch_size``."""
        master = self.trainable * 4 if DTYPE_BYTES[_check_choice(dtype, DTYPE_BYTES, "dtype")] < 4 else 0
        return (
            self.param_bytes(dtype)
            + self.gradient_bytes(dtype)
            + self.optimizer_bytes(optimizer)
            + master
            + self.activations_at(batch_size, dtype)
        )

    def inference_peak(self, batch_size: int | None = None, dtype: str = "fp32") -> int:
        """Bytes to run forward without autograd: weights + outputs (a lower bound)."""
        b = self.batch_size if batch_size is None else batch_size
        return self.param_bytes(dtype) + int(self.output_bytes * b / max(self.batch_size, 1))

    def fits(
        self,
        budget_gb: float,
        batch_size: int | None = None,
        dtype: str = "fp32",
        optimizer: str = "adam",
        training: bool = True,
    ) -> bool:
        """Whether training (or inference) at ``batch_size`` fits in ``budget_gb`` GiB."""
        need = self.training_peak(batch_size, dtype, optimizer) if training else self.inference_peak(batch_size, dtype)
        return need <= budget_gb * GB

    def max_batch_size(self, budget_gb: float, dtype: str = "fp32", optimizer: str = "adam") -> int:
        """The largest batch size whose training peak fits ``budget_gb`` GiB (0 if none)."""
        fixed = self.training_peak(0, dtype, optimizer)
        per_sample = self.activations_at(1, dtype) if self.activation_bytes else 0
        room = budget_gb * GB - fixed
        if room < per_sample or room < 0:
            return 0
        if per_sample == 0:
            raise ConfigError("no activations are saved for backward, so the batch size is unbounded")
        b = int(room // per_sample)
        while b > 0 and self.training_peak(b, dtype, optimizer) > budget_gb * GB:
            b -= 1
        return b

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["param_bytes"] = {k: self.param_bytes(k) for k in ("fp32", "fp16", "bf16", "int8")}
        d["gradient_bytes_fp32"] = self.gradient_bytes("fp32")
        d["optimizer_bytes"] = {k: self.optimizer_bytes(k) for k in ("sgd", "sgd_momentum", "adam")}
        d["training_peak_fp32_adam"] = self.training_peak()
        d["training_peak_bf16_adam"] = self.training_peak(dtype="bf16")
        return d


class SavedTensorMeter:
    """Adds up distinct tensors autograd saves for backward, attributing them via ``attribute``.

    Use as a context manager around the forward pass. Views share their base's storage, so a
    tensor and its views count once; parameters and their views are skipped.
    """

    def __init__(self, model: nn.Module, attribute: Callable[[int], None]):
        self._param_ids = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
        self._seen: dict[int, weakref.ref | Any] = {}
        self._keep: list[torch.Tensor] = []
        self._attribute = attribute
        self.total = 0
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor):
        base = t._base if t._base is not None else t
        key = id(base)
        if key in self._param_ids or key in self._seen:
            return t
        self._seen[key] = True
        self._keep.append(base)  # hold it so its id is not reused during the pass
        try:
            nbytes = base.untyped_storage().nbytes()
        except Exception:  # tensor subclasses without storage
            nbytes = base.numel() * base.element_size()
        self.total += nbytes
        self._attribute(nbytes)
        return t

    def __enter__(self):
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._keep.clear()
        return self._ctx.__exit__(*exc)


def dtype_name(dtype: torch.dtype) -> str:
    return {
        torch.float32: "fp32",
        torch.float16: "fp16",
        torch.bfloat16: "bf16",
        torch.int8: "int8",
        torch.float64: "fp64",
    }.get(dtype, str(dtype).removeprefix("torch."))
