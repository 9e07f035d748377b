"""``archlab.diagram``: the data-flow graph of a model at module granularity.

How the graph is built: one forward pass on meta tensors (nothing allocated) with module hooks
on every module down to ``depth`` and a dispatcher mode that follows each tensor back to the
module call (or input) that produced it. A module at ``depth`` (or a leaf module above it)
becomes a node; the glue code between modules is folded into the edges, except where it merges
tensors from different producers (a residual ``add``, a ``cat``, an attention ``matmul``), which
becomes a small op node, so skip connections and branches stay visible. Edges carry the shape
of the tensor that flows along them.

This works on any module that runs, including ones torch.fx cannot trace (data-dependent
control flow, archlab's input checks): there is no symbolic tracing, so the result is always
the real executed graph; ``graph.method`` says how it was built.

Repeated blocks (consecutive children of one container with identical structure) collapse to
their first instance, labelled ``TransformerBlock x 12``.
"""

from __future__ import annotations

import inspect
import os
import weakref
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from archlab.analysis._prepare import (
    check_cpu_rerun_possible,
    is_data_dependent_error,
    make_inputs,
    preserved_state,
    resolve_model,
)
from archlab.analysis.flops import SKIP_OPS, short_op
from archlab.display import SvgDisplay
from archlab.errors import ConfigError


@dataclass
class Node:
    id: str
    name: str  # qualified module name, or parent.op for op nodes
    label: str
    kind: str  # "input" | "module" | "op" | "output"
    type: str
    params: int = 0
    repeat: int = 1
    groups: list[str] = field(default_factory=list)  # enclosing repeat groups, outer first


@dataclass
class Edge:
    src: str
    dst: str
    shape: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        return "" if self.shape is None else "(" + ", ".join(str(v) for v in self.shape) + ")"


@dataclass
class ModelGraph(SvgDisplay):
    """A model's data-flow graph: plain data. Render it with ``archlab.render(g, "mermaid"|"dot"|"svg")``,
    or write it with ``archlab.render(g, out="model.svg")`` (the format follows the extension)."""

    model: str
    depth: int
    nodes: list[Node]
    edges: list[Edge]
    groups: dict[str, str] = field(default_factory=dict)  # group id -> label
    method: str = "hooks"
    notes: list[str] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "schema_version": 1,
            "model": self.model,
            "depth": self.depth,
            "method": self.method,
            "nodes": [asdict(n) for n in self.nodes],
            "edges": [asdict(e) for e in self.edges],
            "groups": dict(self.groups),
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        return f"ModelGraph({self.model!r}, nodes={len(self.nodes)}, edges={len(self.edges)}, depth={self.depth})"


# ----------------------------------------------------------------------------- building


class _Builder(TorchDispatchMode):
    def __init__(self, model: nn.Module, depth: int):
        super().__init__()
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []
        self.prov: dict[int, tuple[weakref.ref, str]] = {}
        self.inside_leaf = 0
        self.parents: list[str] = []
        self.op_counts: dict[str, Counter] = {}
        self.call_counts: Counter = Counter()
        self.handles = []
        self.names: dict[nn.Module, str] = {}
        levels = module_levels(model)
        for name, m in model.named_modules():
            if levels[m] > depth or isinstance(m, _CONTAINERS):
                continue
            self.names[m] = name
            leaf = levels[m] == depth or not any(True for _ in m.children())
            if leaf:
                self.handles.append(m.register_forward_pre_hook(self._leaf_pre, with_kwargs=True))
                self.handles.append(m.register_forward_hook(self._leaf_post, with_kwargs=True, always_call=True))
            else:
                self.handles.append(m.register_forward_pre_hook(self._parent_pre))
                self.handles.append(m.register_forward_hook(self._parent_post, always_call=True))
        self._pending: list[list[Edge]] = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _new_node(self, **kw) -> Node:
        node = Node(id=f"n{len(self.nodes)}", **kw)
        self.nodes.append(node)
        return node

    def _source(self, t: torch.Tensor) -> str | None:
        entry = self.prov.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def _set(self, value: Any, node_id: str) -> None:
        for t in tree_leaves(value):
            if isinstance(t, torch.Tensor):
                self.prov[id(t)] = (weakref.ref(t), node_id)

    def _in_edges(self, value: Any) -> list[Edge]:
        out, seen = [], set()
        for t in tree_leaves(value):
            if isinstance(t, torch.Tensor):
                src = self._source(t)
                if src is not None and src not in seen:
                    seen.add(src)
                    out.append(Edge(src, "", tuple(t.shape)))
        return out

    # hooks
    def _parent_pre(self, module, args):
        if self.inside_leaf:
            return
        name = self.names[module]
        self.parents.append(name)
        self.op_counts[name] = Counter()

    def _parent_post(self, module, args, output):
        if self.inside_leaf:
            return
        if self.parents and self.parents[-1] == self.names[module]:
            self.parents.pop()

    def _leaf_pre(self, module, args, kwargs):
        if self.inside_leaf == 0:
            self._pending.append(self._in_edges((args, kwargs)))
        self.inside_leaf += 1

    def _leaf_post(self, module, args, kwargs, output):
        self.inside_leaf -= 1
        if self.inside_leaf:
            return
        edges = self._pending.pop() if self._pending else []
        name = self.names[module]
        self.call_counts[name] += 1
        calls = self.call_counts[name]
        label = (name or type(module).__name__) + (f" #{calls}" if calls > 1 else "")
        node = self._new_node(
            name=name if calls == 1 else f"{name}#{calls}",
            label=label,
            kind="module",
            type=type(module).__name__,
            params=sum(p.numel() for p in module.parameters()),
        )
        for e in edges:
            e.dst = node.id
            self.edges.append(e)
        self._set(output, node.id)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.inside_leaf or func in SKIP_OPS:
            return out
        edges = self._in_edges((args, kwargs))
        if len(edges) == 1:
            self._set(out, edges[0].src)
        elif len(edges) > 1:
            parent = self.parents[-1] if self.parents else ""
            op = short_op(str(func._overloadpacket)).rstrip("_")
            counts = self.op_counts.setdefault(parent, Counter())
            k = counts[op]
            counts[op] += 1
            opname = op if k == 0 else f"{op}_{k}"
            node = self._new_node(name=f"{parent}.{opname}" if parent else opname, label=op, kind="op", type=op)
            for e in edges:
                e.dst = node.id
                self.edges.append(e)
            self._set(out, node.id)
        return out


def _arg_names(module: nn.Module, n: int, kwargs: dict) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = [params[i] if i < len(params) else f"arg{i}" for i in range(n)]
    return names + list(kwargs)


_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def module_levels(model: nn.Module) -> dict[nn.Module, int]:
    """Nesting level of each module, not counting ModuleList/ModuleDict (never called)."""
    levels = {model: 0}
    for _, m in model.named_modules():
        for c in m.children():
            if c not in levels:
                levels[c] = levels[m] + (0 if isinstance(m, _CONTAINERS) else 1)
    return levels


def _signature(m: nn.Module) -> tuple:
    return tuple(
        (n, type(c).__name__, tuple(tuple(p.shape) for p in c.parameters(recurse=False))) for n, c in m.named_modules()
    )


def _repeat_runs(model: nn.Module, depth: int) -> list[tuple[str, list[str], str]]:
    """(group key, member names, type) for runs of >= 2 identical consecutive children."""
    runs = []
    levels = module_levels(model)
    for pname, parent in model.named_modules():
        if levels[parent] + (0 if isinstance(parent, _CONTAINERS) else 1) > depth:
            continue
        children = list(parent.named_children())
        i = 0
        while i < len(children):
            j = i + 1
            sig = _signature(children[i][1])
            while j < len(children) and _signature(children[j][1]) == sig:
                j += 1
            if j - i >= 2:
                members = [f"{pname}.{n}" if pname else n for n, _ in children[i:j]]
                runs.append((members[0], members, type(children[i][1]).__name__))
            i = j
    runs.sort(key=lambda r: r[0].count("."))
    return runs


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".") or name.startswith(prefix + "#")


def _instance(name: str, members: list[str]) -> int | None:
    """Which repeat of a block (index into ``members``) the module ``name`` belongs to."""
    for k, p in enumerate(members):
        if _within(name, p):
            return k
    return None


def _collapse(graph: ModelGraph, runs) -> None:
    for gi, (_key, members, type_name) in enumerate(runs):
        by_name = {n.name: n for n in graph.nodes}
        if not any(_within(n, members[0]) for n in by_name):
            continue  # removed by an outer collapse, or never called
        inst = {n.id: _instance(n.name, members) for n in graph.nodes}
        # Only a chain is a repeat (block k feeds block k+1); parallel twins stay separate.
        links = {
            inst[e.src]
            for e in graph.edges
            if inst.get(e.src) is not None and inst.get(e.dst) == (inst[e.src] or 0) + 1
        }
        if links != set(range(len(members) - 1)):
            continue
        remap: dict[str, str | None] = {}
        for n in graph.nodes:
            k = inst[n.id]
            if k:
                twin = by_name.get(members[0] + n.name[len(members[k]) :])
                remap[n.id] = twin.id if twin is not None else None
        edges, seen = [], set()
        for e in graph.edges:
            ks, kd = inst.get(e.src), inst.get(e.dst)
            if ks is not None and kd is not None and ks != kd:
                continue
            src, dst = remap.get(e.src, e.src), remap.get(e.dst, e.dst)
            if src is None or dst is None or src == dst or (src, dst) in seen:
                continue
            seen.add((src, dst))
            edges.append(Edge(src, dst, e.shape))
        graph.edges = edges
        graph.nodes = [n for n in graph.nodes if not inst[n.id]]
        first = [n for n in graph.nodes if inst.get(n.id) == 0]
        label = f"{members[0]} .. {members[-1].rsplit('.', 1)[-1]}: {type_name} x {len(members)}"
        if len(first) == 1 and first[0].name == members[0]:
            first[0].repeat = len(members)
            first[0].label = f"{members[0]}..{members[-1].rsplit('.', 1)[-1]}"
        else:
            gid = f"g{gi}"
            graph.groups[gid] = label
            for n in first:
                n.groups.append(gid)


def diagram(
    model: nn.Module | str | os.PathLike,
    input: Any = None,
    *,
    input_shape: Any = None,
    depth: int = 2,
    collapse_repeats: bool = True,
    overrides: dict[str, Any] | None = None,
) -> ModelGraph:
    """Data-flow graph of ``model`` at module granularity down to ``depth``.

    Args:
        model: an ``nn.Module``, a registry name or a run directory.
        input / input_shape: forward's arguments, as for :func:`archlab.summary`; registry models
            use ``example_input()``.
        depth: module level drawn as nodes (1 = the model's direct children).
        collapse_repeats: draw runs of identical blocks once, labelled ``Block x N``.

    Returns:
        A :class:`ModelGraph`. A wrong input raises the model's own ShapeError.
    """
    if depth < 1:
        raise ConfigError(f"depth must be >= 1 for a diagram; got {depth}")
    try:
        return _diagram(model, input, input_shape, depth, collapse_repeats, overrides, "meta")
    except (NotImplementedError, RuntimeError) as exc:
        if not is_data_dependent_error(exc):
            raise
        check_cpu_rerun_possible(model, exc)
        graph = _diagram(model, input, input_shape, depth, collapse_repeats, overrides, "cpu")
        graph.notes.append("traced on cpu: the model has data-dependent ops that meta tensors cannot run")
        return graph


def _diagram(model, input, input_shape, depth, collapse_repeats, overrides, device) -> ModelGraph:
    module, name, private = resolve_model(model, device, overrides)
    args, kwargs = make_inputs(module, input, input_shape, None, device)
    builder = _Builder(module, depth)
    for arg_name, t in zip(_arg_names(module, len(args), kwargs), list(args) + list(kwargs.values())):
        leaves = [x for x in tree_leaves(t) if isinstance(x, torch.Tensor)]
        if not leaves:
            continue
        shape = "(" + ", ".join(str(v) for v in leaves[0].shape) + ")"
        node = builder._new_node(name=f"input:{arg_name}", label=f"{arg_name} {shape}", kind="input", type="input")
        builder._set(t, node.id)
    try:
        with preserved_state(module, private), torch.no_grad(), builder:
            output = module(*args, **kwargs)
    finally:
        builder.remove()
    out_edges = builder._in_edges(output)
    shapes = [tuple(t.shape) for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
    out_node = builder._new_node(
        name="output",
        label="output " + " ".join("(" + ", ".join(str(v) for v in s) + ")" for s in shapes[:3]),
        kind="output",
        type="output",
    )
    for e in out_edges:
        e.dst = out_node.id
        builder.edges.append(e)
    graph = ModelGraph(model=name, depth=depth, nodes=builder.nodes, edges=builder.edges)
    if not out_edges:
        graph.notes.append("the output could not be traced back to a module or input")
    if collapse_repeats:
        _collapse(graph, _repeat_runs(module, depth))
    _prune_dangling_inputs(graph)
    return graph


def _prune_dangling_inputs(graph: ModelGraph) -> None:
    used = {e.src for e in graph.edges} | {e.dst for e in graph.edges}
    graph.nodes = [n for n in graph.nodes if n.kind not in ("input",) or n.id in used or len(graph.nodes) <= 2]
