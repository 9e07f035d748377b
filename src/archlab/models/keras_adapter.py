"""Keras 3 models (torch backend) as archlab modules: summary, diagram, compare, benchmark,
export and training with archlab's trainer.

With ``KERAS_BACKEND=torch``, Keras 3 builds every layer as a ``torch.nn.Module`` whose weights
are torch ``Parameter`` s, and calling a layer goes through ``nn.Module.__call__`` (so forward
hooks fire). Two things still keep a bare Keras model from being a good ``nn.Module`` for archlab:

- its layers are not registered as torch submodules: the model and its internal ``Functional``
  each hold a flat ``ParameterDict`` of every weight, so per-module counts would show every
  weight once per nested container, and ``state_dict`` holds each tensor twice (safetensors
  refuses shared tensors);
- it expects Keras's channels-last layout (B, H, W, C), while archlab's image data and example
  inputs are channels-first (B, C, H, W).

:class:`KerasModule` fixes both: its children are the model's top-level layers (each layer's
``ParameterDict`` holds its own weights, those of nested sublayers included, once), the model
itself is kept outside the module tree, and with ``channels_first=True`` its forward takes
(B, C, H, W) and permutes to what the Keras model expects. The dropout seed generators' states
are non-trainable integer variables that Keras's ``count_params()`` leaves out; they stay out
of :meth:`KerasModule.parameters` too (kept as buffers), so archlab's parameter count equals
``model.count_params()``.

Two training differences are the adapter's business, done by :meth:`KerasModule.before_fit`,
which ``archlab.fit`` calls with the run's length and seed before the first step:

- **BatchNorm momentum.** Keras's ``BatchNormalization(momentum=0.99)`` keeps 99% of the moving
  statistics at each step (PyTorch's ``momentum=0.1`` keeps 90%): after ``n`` steps the initial
  statistics (mean 0, variance 1) still weigh ``0.99**n`` -- 0.37 after 100 steps -- so a short
  run evaluates with statistics that are not the data's, and test accuracy collapses while the
  training loss looks fine. A layer whose ``momentum**steps`` is above :data:`BN_UNCONVERGED`
  gets one warning line with a momentum that converges in this run, the steps the current one
  needs, and the adapter option ``from_keras(model, batchnorm_momentum="torch")``, which sets
  every BatchNormalization layer to PyTorch's convention (0.9 in Keras's terms); the run's
  config.yaml records it under ``model.adapter``.
- **Seeding.** A Keras layer that draws random numbers (``GaussianNoise``, a seeded
  ``Dropout``, a user's layer calling ``keras.random.*``) does so from its own ``SeedGenerator``,
  whose state was drawn from python's generator when the layer was built, or from Keras's global
  one: archlab's seeding of python, NumPy and torch at the start of the run reaches neither. So
  every layer generator built without an explicit seed is reset from the run's seed, and the
  run's seed is given to ``keras.utils.set_random_seed`` (with python's, NumPy's and torch's
  states kept where archlab left them): the same seed, the same noise. The generators' states
  are buffers of this module, so every checkpoint holds them and a resume continues them
  exactly. (Keras's ``Dropout`` without a seed draws its masks from torch's generator, which
  archlab seeds and checkpoints anyway.) The initial weights are drawn when the user builds the
  model: call ``keras.utils.set_random_seed(seed)`` before building it.

A TensorFlow-only model (the TF backend, or a SavedModel) is not an ``nn.Module``: export it to
ONNX (``tf2onnx``) and measure it through archlab's ONNX path instead.
"""

from __future__ import annotations

import logging
import math
import os
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.errors import ConfigError, ShapeError, require

log = logging.getLogger("archlab.models")

#: a BatchNormalization layer's moving statistics count as unconverged while the initial values
#: still weigh more than this after the run's steps (``momentum ** steps``)
BN_UNCONVERGED = 0.05
#: PyTorch's BatchNorm ``momentum=0.1`` (weight of the new batch) in Keras's convention (weight of
#: the moving value): what ``batchnorm_momentum="torch"`` sets
TORCH_BN_MOMENTUM = 0.9


def keras_module() -> Any:
    """The ``keras`` package on the torch backend, or MissingExtraError naming archlab[keras]."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = require("keras", "keras", "Keras models")
    backend = keras.backend.backend()
    if backend != "torch":
        raise ConfigError(
            f"Keras models need the torch backend (KERAS_BACKEND=torch before keras is imported); got {backend!r}"
        )
    return keras


def is_keras_model(obj: Any) -> bool:
    """Whether ``obj`` is a Keras layer or model (checked without importing keras)."""
    return any(c.__module__.startswith("keras.") for c in type(obj).__mro__)


class KerasModule(nn.Module):
    """A Keras 3 model (torch backend) as a plain ``nn.Module`` for archlab.

    Args:
        model: a built Keras model (``keras.Sequential``, functional or subclassed, with a known
            input shape).
        channels_first: forward takes (B, C, ...) and moves the channels last for a Keras model
            whose layers are ``data_format="channels_last"`` (the Keras default).
        batchnorm_momentum: ``"torch"`` (PyTorch's convention, 0.9 in Keras's terms) or a number
            in (0, 1) to set on every BatchNormalization layer of the model (it changes the
            wrapped Keras model's layers); None (the default) leaves them as built.
    """

    def __init__(self, model: Any, *, channels_first: bool = False, batchnorm_momentum: float | str | None = None):
        super().__init__()
        keras_module()
        if not is_keras_model(model):
            raise ConfigError(f"KerasModule expects a Keras model; got {type(model).__name__}")
        if not model.built or not getattr(model, "inputs", None):
            raise ConfigError(
                f"Keras model {model.name!r} is not built with a known input shape; "
                "give it keras.Input(shape) or call model.build((None, ...)) first"
            )
        # Kept off the module tree (object.__setattr__): its flat ParameterDicts repeat the layers'.
        object.__setattr__(self, "keras_model", model)
        self.channels_first = channels_first
        self.layers = nn.ModuleDict({layer.name: layer for layer in model.layers})
        self._own_weights_as_parameters()
        self.batchnorm_momentum = _momentum_option(batchnorm_momentum)
        self.momentum_was: dict[str, float] = {}  # layer -> its momentum before the option set it
        if self.batchnorm_momentum is not None:
            for bn in self.batchnorms():
                if bn.momentum != self.batchnorm_momentum:
                    self.momentum_was[bn.name] = float(bn.momentum)
                    bn.momentum = self.batchnorm_momentum

    def _own_weights_as_parameters(self) -> None:
        """Register each Keras layer's own weights directly on it (a leaf to archlab's analysis).

        Keras keeps a layer's weights (its sublayers' included) in a ``_torch_params``
        ``ParameterDict`` child; that child is never called, so it would be the node at every
        diagram depth and a row under each layer. It is taken off the module tree (Keras still
        updates it through the attribute) and each layer registers the same ``Parameter``
        objects whose variables are its own, not a sublayer's: every weight is counted once,
        in the layer that owns it. Seed-generator states (integer RNG state, which
        ``count_params()`` leaves out) become buffers of this module.
        """
        for layer in list(self.layers.modules())[::-1]:  # sublayers before their parents
            if not is_keras_model(layer):
                continue
            fresh = "_torch_params" in layer._modules  # False when an earlier view moved them already
            if fresh:
                params = layer.torch_params
                del layer._modules["_torch_params"]
                object.__setattr__(layer, "_torch_params", params)  # Keras keeps tracking variables in it
            inner = {id(v.value) for child in layer.children() if is_keras_model(child) for v in child.variables}
            for v in layer.variables:
                p = v.value
                if id(p) in inner:
                    continue
                if not p.is_floating_point():
                    self.register_buffer(f"rng_{len(self._buffers)}", p.data)
                    continue
                if not fresh:
                    continue
                # The variable's short name ("kernel", "gamma"): stable across builds, unlike
                # Keras's auto-numbered paths; Keras layers hold attributes of those names.
                name = v.name.replace("/", "_").replace(".", "_")
                while hasattr(layer, name):
                    name += "_"
                layer.register_parameter(name, p)

    def __deepcopy__(self, memo: dict[int, Any]) -> KerasModule:
        """An independent copy with the same weights, on Keras's device.

        Keras variables cannot live on the meta device (Keras moves tensors to its own device),
        so a meta copy for analysis is a real copy: Keras models are analysed on the CPU.
        """
        keras = keras_module()
        try:
            clone = keras.models.clone_model(self.keras_model)
        except (ValueError, TypeError, NotImplementedError) as exc:  # e.g. a subclassed model without get_config
            raise ConfigError(
                f"Keras model {self.keras_model.name!r} cannot be cloned for analysis ({exc}); analyse it with device='cpu'"
            ) from None
        copy = KerasModule(clone, channels_first=self.channels_first, batchnorm_momentum=self.batchnorm_momentum)
        source = self.state_dict(keep_vars=True)
        with torch.no_grad():  # clone_model keeps the layer and variable names, so the keys match
            for name, t in copy.state_dict(keep_vars=True).items():
                t.copy_(source[name])
        return copy.train(self.training)

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """Keras's input shape with ``None`` for the batch, in the layout forward takes."""
        shape = tuple(self.keras_model.inputs[0].shape)
        return (shape[0], shape[-1], *shape[1:-1]) if self.channels_first else shape

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        """A random batch in forward's layout: (B, C, H, W) with ``channels_first``, else Keras's."""
        shape = self.input_shape[1:]
        if any(d is None for d in shape):
            raise ConfigError(
                f"Keras model {self.keras_model.name!r} has a variable input shape {shape}; pass input=..."
            )
        return (torch.randn(batch_size, *shape, device=self._device()),)

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Keras model's output for ``x``.

        Args:
            x: (B, C, *spatial) with ``channels_first``, else the Keras layout (B, *spatial, C).

        Returns:
            The Keras model's output (e.g. (B, classes) logits).
        """
        want = self.input_shape
        if x.ndim != len(want) or any(w is not None and w != g for w, g in zip(want[1:], x.shape[1:])):
            raise ShapeError(
                f"{self.keras_model.name} expects input {tuple('B' if d is None else d for d in want)}; "
                f"got {tuple(x.shape)}"
            )
        if self.channels_first:
            x = x.movedim(1, -1)  # (B, C, H, W) -> (B, H, W, C)
        return self.keras_model(x, training=self.training)

    def extra_repr(self) -> str:
        bn = "" if self.batchnorm_momentum is None else f", batchnorm_momentum={self.batchnorm_momentum}"
        return f"keras_model={self.keras_model.name!r}, channels_first={self.channels_first}{bn}"

    # -- training ----------------------------------------------------------------------------------
    def batchnorms(self) -> list[Any]:
        """The model's BatchNormalization layers, nested ones included."""
        bn = keras_module().layers.BatchNormalization
        return [m for m in self.layers.modules() if isinstance(m, bn)]

    def reseed_layers(self, seed: int) -> int:
        """Reset the state of every layer ``SeedGenerator`` built without a seed from ``seed``
        (each its own stream, in layer order); returns how many. Explicitly seeded ones are
        left alone: their user chose them."""
        keras = keras_module()
        n = 0
        for layer in self.layers.modules():
            # Keras keeps a layer's generators in _seed_generators and the seed it was given (None:
            # drawn from python's generator at build time) in _initial_seed; neither is public.
            for gen in getattr(layer, "_seed_generators", ()):
                if getattr(gen, "_initial_seed", 0) is None:
                    state = [(seed * 1_000_003 + n) % 2**31 + 1, 0]
                    gen.state.assign(keras.ops.convert_to_tensor(state, dtype=gen.state.dtype))
                    n += 1
        return n

    def before_fit(self, total_steps: int, seed: int) -> dict[str, Any]:
        """Seed Keras's own generator from the run's seed and check the BatchNorm momentum for a
        run of ``total_steps`` optimizer steps (``archlab.fit`` calls this before the first step).

        Returns:
            What the run's config.yaml records under ``model.adapter``: the seed given to Keras,
            the momentum the option set (and the layers' own), the warning line when one was logged.
        """
        _seed_keras(seed)
        self.reseed_layers(seed)
        record: dict[str, Any] = {"keras_seed": seed}
        if self.momentum_was:
            record["batchnorm_momentum"] = {"set": self.batchnorm_momentum, "was": dict(self.momentum_was)}
            log.info(
                "keras: BatchNormalization momentum set to %g%s for this run by "
                "from_keras(batchnorm_momentum=...); the layers were built with %s",
                self.batchnorm_momentum,
                " (PyTorch's convention)" if self.batchnorm_momentum == TORCH_BN_MOMENTUM else "",
                ", ".join(f"{k}={v:g}" for k, v in self.momentum_was.items()),
            )
        warning = batchnorm_advice(self.batchnorms(), total_steps)
        if warning:
            log.warning("%s", warning)
            record["batchnorm_warning"] = warning
        return record


def batchnorm_advice(layers: list[Any], steps: int) -> str | None:
    """One line for BatchNormalization layers whose moving statistics will not converge in
    ``steps`` steps (``momentum ** steps > BN_UNCONVERGED``), with the fix; None when all do."""
    slow = [bn for bn in layers if float(bn.momentum) ** steps > BN_UNCONVERGED]
    if not slow:
        return None
    m = max(float(bn.momentum) for bn in slow)
    fits = math.floor(BN_UNCONVERGED ** (1 / steps) * 100) / 100  # the largest 2-digit momentum that converges
    needs = math.ceil(math.log(BN_UNCONVERGED) / math.log(m))
    return (
        f"keras BatchNormalization {', '.join(bn.name for bn in slow)}: momentum {m:g} leaves the moving "
        f"statistics unconverged after {steps} steps ({m:g}^{steps} = {m**steps:.2f} of their initial values "
        f"remain; evaluation uses them). Set momentum <= {fits:g} for this run, train >= {needs} steps, or "
        f'wrap with from_keras(model, batchnorm_momentum="torch") (0.9, PyTorch\'s convention)'
    )


def _momentum_option(value: float | str | None) -> float | None:
    if value is None:
        return None
    if value == "torch":
        return TORCH_BN_MOMENTUM
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise ConfigError(f"batchnorm_momentum must be 'torch' or a number in (0, 1); got {value!r}")


def _seed_keras(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` for Keras's own global generator only: python's,
    NumPy's and torch's states (which it also reseeds) stay where archlab's seeding left them."""
    keras = keras_module()
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        keras.utils.set_random_seed(seed)
    random.setstate(py)
    np.random.set_state(npy)


def from_keras(
    model: Any, *, channels_first: bool = False, batchnorm_momentum: float | str | None = None
) -> KerasModule:
    """Wrap a Keras 3 model (torch backend) for archlab; see :class:`KerasModule`.

    The view is kept on the Keras model, so wrapping it again (as every archlab function taking
    a module does, through :func:`archlab.inputs.unwrap`) returns the same module.
    """
    if isinstance(model, KerasModule):
        return model
    cached = model.__dict__.get("_archlab_module") if is_keras_model(model) else None
    if (
        cached is not None
        and cached.channels_first == channels_first
        and cached.batchnorm_momentum == _momentum_option(batchnorm_momentum)
    ):
        return cached
    module = KerasModule(model, channels_first=channels_first, batchnorm_momentum=batchnorm_momentum)
    object.__setattr__(model, "_archlab_module", module)  # not a torch submodule of the Keras model
    return module
