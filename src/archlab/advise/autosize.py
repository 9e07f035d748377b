"""Auto-sizing: the largest config of a family that fits every budget given.

The search moves the family's knobs (:mod:`archlab.advise.knobs`): for a few depth factors
(x0.5, x1, x2 of the preset, or 1-4 for shallow presets) it finds the largest width multiplier
that fits, by doubling / halving from the preset and then bisecting in log space. Parameters come
from a model built on the ``meta`` device (no memory allocated), FLOPs and memory from
:func:`archlab.analysis.summary.summary` on ``meta`` (only when a FLOPs or memory budget asks for
them, plus once per depth for the table), so a search over 7 B-class transformers takes seconds.
A latency budget is checked by building the candidate on the CPU and timing it (the bench
harness's :func:`archlab.bench.timing.measure` when it imports, else a local median timer).

Of every fitting candidate, the one with the most parameters wins; within 5 % the preset's own
depth is preferred (the preset's proportions are the ones known to train).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from archlab.advise import knobs as K
from archlab.advise.facts import fit_to_data, load_bundle
from archlab.display import NotebookDisplay
from archlab.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_BISECT_STEPS = 9
_MAX_MEASURE_PARAMS = 300_000_000  # latency is measured for real; larger candidates are not built


@dataclass
class Candidate:
    """One config tried: its knob values and what it costs."""

    width: float
    depth: float
    knobs: dict[str, Any]
    params: int
    flops: int | None = None
    memory_mb: float | None = None
    latency_ms: float | None = None
    fits: bool = False
    over: list[str] = field(default_factory=list)
    pareto: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("width", "depth", "knobs", "params", "flops", "memory_mb", "latency_ms", "fits", "over", "pareto")
        }


@dataclass
class SizedConfig(NotebookDisplay):
    """The result of :func:`autosize`.

    Attributes:
        name: the registry preset sized.
        family: its family.
        overrides: config fields to pass to ``archlab.create(name, **overrides)`` (data fit + knobs).
        params, flops, memory_mb, latency_ms: of the chosen config (None where not measured).
        budgets: the budgets given.
        fits: whether the chosen config is within every budget (False: nothing of this family fits;
            the smallest config tried is returned and ``stop_reason`` says which budget).
        stop_reason: why the search stopped.
        candidates: every config tried (``pareto`` marks the non-dominated fitting ones).
        latency_method: how latency was measured (``bench.timing.measure`` or ``local median``).
    """

    name: str
    family: str
    overrides: dict[str, Any]
    params: int
    flops: int | None
    memory_mb: float | None
    latency_ms: float | None
    budgets: dict[str, Any]
    fits: bool
    stop_reason: str
    candidates: list[Candidate] = field(default_factory=list)
    latency_method: str | None = None
    batch: int = 1
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "family": self.family,
            "overrides": self.overrides,
            "params": self.params,
            "flops": self.flops,
            "memory_mb": self.memory_mb,
            "latency_ms": self.latency_ms,
            "budgets": self.budgets,
            "fits": self.fits,
            "stop_reason": self.stop_reason,
            "batch": self.batch,
            "latency_method": self.latency_method,
            "elapsed_s": round(self.elapsed_s, 3),
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def model_section(self) -> dict[str, Any]:
        """The run file's ``model:`` mapping: ``{name: ..., field: value, ...}``."""
        return {"name": self.name, **self.overrides}

    def to_yaml(self) -> str:
        """A run-file ``model:`` section that ``archlab train`` accepts."""
        import yaml

        head = (
            f"# {self.name} sized by archlab autosize: {self.params:,} parameters"
            + (f", {self.flops:,} FLOPs/sample batch {self.batch}" if self.flops else "")
            + f"; {self.stop_reason}\n"
        )
        return head + yaml.safe_dump({"model": self.model_section()}, sort_keys=False, default_flow_style=None)


# -- measuring one candidate ------------------------------------------------------------------------


def _param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _analyse(model: torch.nn.Module, batch: int) -> tuple[int, float]:
    """FLOPs of one forward at ``batch`` and training memory (MB: weights, grads, Adam, activations)."""
    from archlab.analysis.summary import summary

    s = summary(model, device="meta", batch_size=batch)
    m = s.memory
    total = m.param_bytes("fp32") + m.gradient_bytes("fp32") + m.optimizer_bytes("adam") + m.activation_bytes
    return int(s.flops), total / 2**20


def _time_call(fn, threads: int | None) -> tuple[float, str]:
    """Median seconds of ``fn`` after warm-up, and the method used."""
    from archlab.bench.timing import measure

    with _threads(1 if threads is None else threads):
        t = measure(fn, min_time_s=0.1, min_calls=5)
    return statistics.median(t.times_s), "archlab.bench.timing.measure"


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def measure_latency_ms(
    name: str, overrides: dict[str, Any], batch: int = 1, threads: int | None = None
) -> tuple[float, str]:
    """Build ``name`` on the CPU and time one inference forward at ``batch`` (ms, method)."""
    from archlab.registry import create

    model = create(name, device="cpu", **overrides).eval()
    args = model.example_input(batch_size=batch)
    args = args if isinstance(args, tuple) else (args,)

    def call():
        with torch.inference_mode():
            model(*args)

    seconds, method = _time_call(call, threads)
    return seconds * 1e3, method


# -- the search -----------------------------------------------------------------------------------


class _Search:
    def __init__(self, name: str, base: dict[str, Any], budgets: dict[str, Any], batch: int, threads: int | None):
        from archlab.registry import get_entry

        self.name, self.entry = name, get_entry(name)
        self.base, self.budgets, self.batch, self.threads = base, budgets, batch, threads
        self.knobs = K.knobs_for(self.entry, base)  # none: the preset is judged as it is
        self.cache: dict[str, Candidate] = {}
        self.latency_method: str | None = None

    def evaluate(self, width: float, depth: float, analyse: bool = False) -> Candidate | None:
        from archlab.registry import create

        cfg = K.apply(self.knobs, self.base, width, depth, self.entry.family)
        key = repr(sorted(K.knob_values(self.knobs, cfg).items()))
        cand = self.cache.get(key)
        if cand is None:
            try:
                model = create(self.name, device="meta", **cfg)
            except Exception as exc:  # an invalid combination (a stage too small, a bad head count)
                log.debug("autosize: %s rejected %s: %s", self.name, cfg, exc)
                return None
            cand = Candidate(width, depth, K.knob_values(self.knobs, cfg), _param_count(model))
            cand._cfg = cfg  # type: ignore[attr-defined]
            cand._model = model  # type: ignore[attr-defined]
            self.cache[key] = cand
        need_analysis = analyse or self.budgets.get("flops_max") or self.budgets.get("memory_mb")
        if need_analysis and cand.flops is None and self._params_ok(cand):
            try:
                cand.flops, cand.memory_mb = _analyse(cand._model, self.batch)  # type: ignore[attr-defined]
            except Exception as exc:  # analysis cannot trace it: the params budget still holds
                log.debug("autosize: analysis failed for %s: %s", self.name, exc)
        self._judge(cand)
        if cand.fits and self.budgets.get("latency_ms") and cand.latency_ms is None:
            if cand.params > _MAX_MEASURE_PARAMS:
                cand.over.append("latency_ms (too large to measure)")
                cand.fits = False
            else:
                cand.latency_ms, self.latency_method = measure_latency_ms(
                    self.name, cand._cfg, self.batch, self.threads
                )  # type: ignore[attr-defined]
                self._judge(cand)
        return cand

    def _params_ok(self, c: Candidate) -> bool:
        return not self.budgets.get("params_max") or c.params <= self.budgets["params_max"]

    def _judge(self, c: Candidate) -> None:
        b, over = self.budgets, []
        if b.get("params_max") and c.params > b["params_max"]:
            over.append("params_max")
        if b.get("flops_max") and (c.flops is None or c.flops > b["flops_max"]):
            over.append("flops_max")
        if b.get("memory_mb") and (c.memory_mb is None or c.memory_mb > b["memory_mb"]):
            over.append("memory_mb")
        if b.get("latency_ms") and c.latency_ms is not None and c.latency_ms > b["latency_ms"]:
            over.append("latency_ms")
        c.over, c.fits = over, not over

    def depth_factors(self) -> list[float]:
        depth_knobs = [k for k in self.knobs if k.role == "depth"]
        if not depth_knobs:
            return [1.0]
        k = depth_knobs[0]
        value = self.base[k.field]
        n = len(value) if k.kind == "length" else (max(value) if isinstance(value, list) else int(value))
        if n <= 2:
            return sorted({d / n for d in (1, 2, 3, 4) if d <= k.maximum} | {1.0})
        return [0.5, 1.0, 2.0]

    def best_width(self, depth: float) -> tuple[Candidate | None, str]:
        """Largest fitting width at ``depth`` and why the search stopped."""
        top = max(1.0, K.max_width(self.knobs, self.base))
        w_max = 65536 / top
        w_min = 1.0 / top
        c = self.evaluate(1.0, depth)
        if c is not None and c.fits:
            lo, hi = 1.0, None
            w = 1.0
            while w < w_max:
                w = min(w * 2, w_max)
                c = self.evaluate(w, depth)
                if c is None or not c.fits:
                    hi = w
                    break
                lo = w
            if hi is None:
                return self.evaluate(lo, depth), "reached the largest width the config allows"
        else:
            hi, lo = 1.0, None
            w = 1.0
            while w > w_min:
                w = max(w / 2, w_min)
                c = self.evaluate(w, depth)
                if c is not None and c.fits:
                    lo = w
                    break
                hi = w
            if lo is None:
                return None, "even the narrowest config exceeds the budget"
        for _ in range(_BISECT_STEPS):
            mid = math.sqrt(lo * hi)
            c = self.evaluate(mid, depth)
            if c is not None and c.fits:
                lo = mid
            else:
                hi = mid
            if hi / lo < 1.01:
                break
        best = self.evaluate(lo, depth)
        edge = self.evaluate(hi, depth)
        binding = ", ".join(edge.over) if edge is not None and edge.over else "the budget"
        return best, f"{binding} binds: the next width up ({hi:.3g}x) does not fit"


def given_budgets(params_max, flops_max, latency_ms, memory_mb) -> dict[str, Any]:
    """The budgets that are set (not None), by :func:`autosize`'s keyword names."""
    return {
        k: v
        for k, v in dict(params_max=params_max, flops_max=flops_max, latency_ms=latency_ms, memory_mb=memory_mb).items()
        if v is not None
    }


def _budgets(params_max, flops_max, latency_ms, memory_mb) -> dict[str, Any]:
    budgets = given_budgets(params_max, flops_max, latency_ms, memory_mb)
    for k, v in budgets.items():
        if not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"autosize: {k} must be a positive number; got {v!r}")
    if not budgets:
        raise ConfigError("autosize needs a budget: params_max, flops_max, latency_ms or memory_mb")
    return budgets


def _mark_pareto(cands: list[Candidate]) -> None:
    fitting = [c for c in cands if c.fits]

    def cost(c: Candidate) -> tuple[float, float]:
        return (c.flops if c.flops is not None else math.inf, c.latency_ms if c.latency_ms is not None else math.inf)

    for c in fitting:
        c.pareto = not any(
            o is not c
            and o.params >= c.params
            and all(a <= b for a, b in zip(cost(o), cost(c)))
            and (o.params > c.params or cost(o) != cost(c))
            for o in fitting
        )


def autosize(
    name: str,
    data: Any = None,
    *,
    params_max: int | None = None,
    flops_max: int | None = None,
    latency_ms: float | None = None,
    memory_mb: float | None = None,
    batch: int = 1,
    threads: int | None = None,
    task: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> SizedConfig:
    """The largest config of ``name``'s family within every budget given.

    Args:
        name: a registry preset (its family's knobs are moved; see :mod:`archlab.advise.knobs`).
        data: a DataBundle, bundled name or path: the config is first fitted to it (inputs,
            classes, vocabulary, sequence length), as ``archlab train`` would.
        params_max: most parameters.
        flops_max: most forward FLOPs at ``batch`` (meta-device analysis).
        latency_ms: most milliseconds per forward at ``batch`` on this machine's CPU (measured).
        memory_mb: most training memory in MiB (fp32 weights + grads + Adam state + activations at ``batch``).
        batch: batch size for FLOPs, memory and latency.
        threads: CPU threads while timing (default 1: single-stream latency, stable on a busy machine).
        task: the task when ``data`` can serve several.
        overrides: config fields fixed by the user (never moved unless they are knobs).

    Raises:
        ConfigError: no budget or a non-positive budget. A family without knobs is judged as it is.
    """
    from archlab.registry import get_entry

    t0 = time.perf_counter()
    budgets = _budgets(params_max, flops_max, latency_ms, memory_mb)
    if batch < 1:
        raise ConfigError(f"autosize: batch must be >= 1; got {batch}")
    entry = get_entry(name)
    user = dict(overrides or {})
    fitted = fit_to_data(entry, load_bundle(data, task), task, user=user) if data is not None else {}
    base = entry.config.build({**entry.defaults, **fitted, **user}).model_dump()
    search = _Search(name, base, budgets, batch, threads)

    if not search.knobs:  # a family with nothing to scale (a linear forecaster): judged as it is
        return _as_is(search, name, entry, fitted, user, budgets, batch, t0)
    per_depth = _largest_fit_per_depth(search)
    cands = list(search.cache.values())
    _mark_pareto(cands)
    chosen, fits, stop = _choose(per_depth, cands, name, entry.family)
    cfg = chosen._cfg  # type: ignore[attr-defined]
    keep = set(fitted) | set(user) | set(K.knob_values(search.knobs, cfg))
    sized = {k: v for k, v in cfg.items() if k in keep}
    return SizedConfig(
        name=name,
        family=entry.family,
        overrides=sized,
        params=chosen.params,
        flops=chosen.flops,
        memory_mb=chosen.memory_mb,
        latency_ms=chosen.latency_ms,
        budgets=budgets,
        fits=fits,
        stop_reason=stop,
        candidates=sorted(cands, key=lambda c: c.params),
        latency_method=search.latency_method,
        batch=batch,
        elapsed_s=time.perf_counter() - t0,
    )


def _largest_fit_per_depth(search: _Search) -> list[tuple[Candidate, str]]:
    """The widest fitting candidate at each depth factor, with why the search stopped there;
    each is analysed (FLOPs, memory) for the table even without those budgets."""
    per_depth: list[tuple[Candidate, str]] = []
    for depth in search.depth_factors():
        best, why = search.best_width(depth)
        if best is not None and best.fits:
            per_depth.append((best, why))
    for best, _ in per_depth:
        search.evaluate(best.width, best.depth, analyse=True)
    return per_depth


def _choose(
    per_depth: list[tuple[Candidate, str]], cands: list[Candidate], name: str, family: str
) -> tuple[Candidate, bool, str]:
    """``(candidate, fits, stop reason)``: the largest fit, the preset's own depth preferred within
    5 % of the most parameters; when nothing fits, the smallest config tried.

    Raises:
        ConfigError: no config of ``name`` could be built at all.
    """
    if per_depth:
        top = max(c.params for c, _ in per_depth)
        near = [(c, w) for c, w in per_depth if c.params >= 0.95 * top]
        chosen, why = min(near, key=lambda cw: (abs(math.log(cw[0].depth)), -cw[0].params))
        return chosen, True, f"largest fit at depth x{chosen.depth:g}, width x{chosen.width:.3g}: {why}"
    smallest = min(cands, key=lambda c: c.params) if cands else None
    if smallest is None:
        raise ConfigError(f"autosize: no valid config of {name!r} could be built")
    over = ", ".join(sorted({o for c in cands for o in c.over})) or "the budget"
    return smallest, False, f"nothing in family {family!r} meets {over}; the smallest config tried is returned"


def _as_is(search: _Search, name: str, entry: Any, fitted: dict, user: dict, budgets: dict, batch: int, t0: float):
    """The preset as fitted to the data, measured against the budgets (it has no knobs to move)."""
    cand = search.evaluate(1.0, 1.0, analyse=True)
    if cand is None:
        raise ConfigError(f"autosize: {name!r} cannot be built with {sorted({**fitted, **user})}")
    over = ", ".join(cand.over)
    return SizedConfig(
        name=name,
        family=entry.family,
        overrides={k: v for k, v in cand._cfg.items() if k in set(fitted) | set(user)},  # type: ignore[attr-defined]
        params=cand.params,
        flops=cand.flops,
        memory_mb=cand.memory_mb,
        latency_ms=cand.latency_ms,
        budgets=budgets,
        fits=cand.fits,
        stop_reason=f"family {entry.family!r} has no scaling knobs: the preset as fitted to the data"
        + ("" if cand.fits else f" is over {over}"),
        candidates=[cand],
        latency_method=search.latency_method,
        batch=batch,
        elapsed_s=time.perf_counter() - t0,
    )
