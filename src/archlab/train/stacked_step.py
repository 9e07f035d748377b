"""One vmapped step for every member of a stack (:mod:`archlab.train.stacked`): the models'
parameters flattened into one row per member, the forward run under ``torch.func.vmap``, and
the probe that finds which way of taking gradients a model supports."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.func import grad_and_value, stack_module_state, vmap

from archlab.data.base import Split
from archlab.errors import ConfigError


def _base_task_method(task: Any, name: str):
    """The task protocol's default ``name`` (the class at the root of the task's hierarchy that
    defines it), so a task overriding it is told apart without importing upward."""
    for cls in reversed(type(task).__mro__):
        if name in vars(cls):
            return vars(cls)[name]
    return None


#: how a stacked step takes its gradients, tried in this order: a vmapped forward and one
#: ordinary autograd pass (fast); else ``vmap(grad(...))``, whose transforms decompose ops that
#: have no batching rule under plain autograd (``aten::gru``, ``aten::lstm``)
STEP_KINDS = ("autograd", "functorch")


def probe(model: nn.Module, task: Any, batch: Split, grad_clip: float | None = None) -> str | None:
    """Try one vmapped training step of two copies of ``model`` on ``batch``; the error's first
    line when vmap cannot run it (an op without a batching rule, data-dependent control flow,
    in-place writes to captured tensors), else None. Draws from the global RNG inside a fork."""
    kind, reason = step_kind(model, task, batch, grad_clip)
    return None if kind is not None else reason


def step_kind(model: nn.Module, task: Any, batch: Split, grad_clip: float | None) -> tuple[str | None, str]:
    """The first of :data:`STEP_KINDS` that trains two copies of ``model`` on ``batch``, and
    ``""``; or None and why none does."""
    import copy

    errors = []
    for kind in STEP_KINDS:
        with torch.random.fork_rng():
            copies = [copy.deepcopy(model).train(), copy.deepcopy(model).train()]
            params, buffers = stack_module_state(copies)
            flat, shapes = _flatten(params)
            step = _make_step(copies[0], task, grad_clip, list(params), list(buffers), kind)
            inputs = tuple(torch.stack([t, t]) for t in batch.inputs)
            target = torch.stack([batch.target, batch.target])
            try:
                step(flat, shapes, list(buffers.values()), inputs, target)
                return kind, ""
            except Exception as exc:  # any failure means: the next kind, or one at a time
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                errors.append(f"{type(exc).__name__}: {first[:160]}")
    return None, f"vmap cannot run this model ({errors[-1]})"


def _flatten(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Stacked parameters ``{name: (N, *S)}`` -> one ``(N, P)`` tensor and the shapes ``S``."""
    flat = torch.cat([v.detach().reshape(v.shape[0], -1) for v in params.values()], dim=1)
    return flat, [tuple(v.shape[1:]) for v in params.values()]


def _views(flat: torch.Tensor, names: list[str], shapes: list[tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """``{name: (N, *S)}`` views of ``flat``'s columns."""
    out, off = {}, 0
    for name, shape in zip(names, shapes):
        n = math.prod(shape)
        out[name] = flat[:, off : off + n].view(flat.shape[0], *shape)
        off += n
    return out


def _slots(base: nn.Module, names: list[str], kind: str) -> list[tuple[nn.Module, str]]:
    """``(owning module, attribute)`` of each dotted name, for swapping tensors in by dict writes."""
    out = []
    for name in names:
        prefix, _, leaf = name.rpartition(".")
        owner = base.get_submodule(prefix) if prefix else base
        if leaf not in getattr(owner, kind):
            raise ConfigError(f"{name} is not a {kind[1:-1]} of the model")
        out.append((owner, leaf))
    return out


def _make_step(
    base: nn.Module, task: Any, grad_clip: float | None, names: list[str], buffer_names: list[str], kind: str
):
    """``step(flat, params, buffers, inputs, target) -> (grad of flat, losses)`` for stacked members.

    The forward is vmapped over the members: each member's parameter and buffer tensors are
    swapped into ``base`` (dict writes, restored after; ``torch.func.functional_call`` does the
    same with more bookkeeping per call). The backward is ordinary autograd through the batched
    ops, of the sum of the members' losses: member ``i``'s loss depends on member ``i``'s
    parameters only, so the sum's gradient is each member's own. ``params`` are views of the
    ``(N, P)`` tensor ``flat`` (every member's parameters in one row), so the gradient comes as
    one ``(N, P)`` tensor for the optimizer. ``kind`` is one of :data:`STEP_KINDS`.
    """
    p_slots = _slots(base, names, "_parameters")
    b_slots = _slots(base, buffer_names, "_buffers")
    # RNN modules keep a list of their weights, rebuilt by their __setattr__: rebuild it here
    rnns = [m for m in base.modules() if isinstance(m, nn.RNNBase)]

    def install(params, buffers) -> None:  # the tensors the base module computes with
        for (o, k), t in zip(p_slots, params):
            o._parameters[k] = t
        for (o, k), t in zip(b_slots, buffers):
            o._buffers[k] = t
        for r in rnns:
            r._init_flat_weights()

    def loss_fn(params, buffers, inputs, target):
        saved_p, saved_b = [o._parameters[k] for o, k in p_slots], [o._buffers[k] for o, k in b_slots]
        try:
            install(params, buffers)
            out = base(*inputs)
        finally:
            install(saved_p, saved_b)
        return task.batch_loss(out, Split(inputs=inputs, target=target))

    forward = vmap(loss_fn, randomness="different")
    member_grads = vmap(grad_and_value(loss_fn), randomness="different")

    def step(flat, shapes, buffers, inputs, target):
        if kind == "functorch":
            grads, losses = member_grads(list(_views(flat, names, shapes).values()), buffers, inputs, target)
            grad = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)
        else:
            leaf = flat.detach().requires_grad_()
            with torch.enable_grad():
                losses = forward(list(_views(leaf, names, shapes).values()), buffers, inputs, target)
                (grad,) = torch.autograd.grad(losses.sum(), [leaf])
        if grad_clip is not None:  # clip_grad_norm_ per member: the norm of the per-tensor norms
            norms, off = [], 0
            for shape in shapes:
                n = math.prod(shape)
                norms.append(torch.linalg.vector_norm(grad[:, off : off + n], dim=1))
                off += n
            coef = torch.clamp(grad_clip / (torch.linalg.vector_norm(torch.stack(norms, 1), dim=1) + 1e-6), max=1.0)
            grad = grad * coef[:, None]
        return grad, losses.detach()

    return step


# -- the stack's data ------------------------------------------------------------------------------
