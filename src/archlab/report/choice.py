"""The "Why this model" section of a design directory's report (``archlab report DIR``).

``archlab design`` leaves ``design.json`` (step states, the selection), ``sized.json`` (each
candidate sized to the budgets) and ``recommendation.json`` (the advisor's ranking and rules) in
its directory. This module reads them into the report: the candidates' table (validation
metric, latency, parameters; the Pareto front of metric and latency marked), a scatter of
validation metric against latency, and the advisor's rationale in the architecture section.

The select step (:mod:`archlab.runs.design_steps`) writes one :class:`CandidateRow` per search
trial into ``design.json``; this module reads them back through the same type.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from html import escape
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError
from archlab.report.report_data import DesignReport, Figure, read_json
from archlab.rundir import DesignDir

_W, _H, _PAD = 560, 300, 48


@dataclass
class CandidateRow:
    """One row of a design's candidates table: a search trial as the select step recorded it.

    Serialised in ``design.json`` (``steps.select.result.rows``); a design written before the
    search had trials (one row per sized candidate: no ``preset``, ``trial``, ``state``,
    ``reached`` or ``recipe``) reads with those left at their defaults.

    Attributes:
        name: what the table shows (``"mlp_tabular #3"``: the preset and the trial number).
        preset: the registry preset trained.
        trial: the Optuna trial number (None in a design without a search).
        family: the preset's family.
        rank: the advisor's rank of the preset.
        params: parameters at the sized width.
        latency_ms: batch-1 latency at the sized width.
        fits: whether it fits the budgets.
        metric: the selection metric; ``mode`` says whether higher (``"max"``) is better.
        value: the validation metric of a trial trained to the end (None otherwise).
        reached: the last validation metric the trial reported (a pruned one's too).
        state: the trial's state: ``complete``, ``pruned``, ``failed`` or ``running``.
        recipe: the trial's sampled knobs (``width``, ``lr_mult``, ...).
        trained: whether it trained to the end.
        error: why it failed, if it did.
        cv: ``{"k": folds}`` (and ``std``) when candidates were compared by cross-validation.
        pareto: on the Pareto front of metric and latency (None: not trained, not compared).
    """

    name: str
    preset: str = ""
    trial: int | None = None
    family: str = ""
    rank: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    fits: bool = True
    metric: str | None = None
    mode: str | None = None
    value: float | None = None
    reached: float | None = None
    state: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    trained: bool = False
    error: str | None = None
    cv: dict[str, Any] | None = None
    pareto: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> CandidateRow:
        """A row of ``design.json``; keys it does not know (an older design's) are left out.

        Raises:
            ConfigError: ``d`` is not a mapping with a ``name``.
        """
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ConfigError(f"design.json: a candidate row needs a 'name' string; got {got}")
        known = {f.name for f in fields(cls)}
        row = cls(**{k: v for k, v in d.items() if k in known})
        row.recipe = row.recipe or {}
        return row


def design_choice(rep: DesignReport, design_dir: Path) -> None:
    """Fill ``rep.choice`` (and the advisor's rationale) from the files of ``design_dir``."""
    manifest = read_json(design_dir / DesignDir.MANIFEST) or {}
    steps = manifest.get("steps", {})
    sel = steps.get("select", {}).get("result") or {}
    rows = [CandidateRow.from_dict(r) for r in sel.get("rows", [])]
    rep.choice = {
        "winner": sel.get("winner"),
        "winner_trial": sel.get("winner_trial"),
        "verdict": (steps.get("winner", {}).get("result") or {}).get("verdict", ""),
        "baselines": (steps.get("baselines", {}).get("result") or {}).get("rows", []),
        "importances": (steps.get("search", {}).get("result") or {}).get("importances", {}),
        "why": sel.get("why"),
        "metric": sel.get("metric"),
        "mode": sel.get("mode"),
        "compared_on": sel.get("compared_on"),
        "budgets": (steps.get("autosize", {}).get("result") or {}).get("budgets", {}),
        "budget_s": manifest.get("budget", {}).get("budget_s"),
        "spent_s": manifest.get("budget", {}).get("spent_s"),
        "rows": sel.get("rows", []),  # as design.json has them: the report's JSON repeats them
        "steps": {
            k: {"state": v.get("state"), "elapsed_s": v.get("elapsed_s"), "error": v.get("error")}
            for k, v in steps.items()
        },
        "export": steps.get("export", {}).get("result"),
        "winner_steps": (steps.get("winner", {}).get("result") or {}).get("max_steps"),
        "winner_metrics": {
            k: v
            for k, v in ((steps.get("winner", {}).get("result") or {}).get("metrics") or {}).items()
            if k.startswith(("val_", "test_")) and "loss" not in k
        },
    }
    rec = (
        read_json(design_dir / DesignDir.RECOMMENDATION) if (design_dir / DesignDir.RECOMMENDATION).is_file() else None
    )
    if rec:
        rep.rationale["advisor"] = {
            "data": (manifest.get("arguments") or {}).get("data"),
            "task": (rec.get("facts") or {}).get("task"),
            "candidates": [
                {
                    "rank": c["rank"],
                    "name": c["name"],
                    "score": round(c["score"], 3),
                    "reasons": c["reasons"],
                    "tradeoffs": c["tradeoffs"],
                }
                for c in rec.get("candidates", [])
            ],
            "this_model_rank": next(
                (c["rank"] for c in rec.get("candidates", []) if c["name"] == sel.get("winner")), None
            ),
            "warnings": [w["message"] for w in rec.get("warnings", [])],
        }
        rep.rationale["rules_fired"] = ", ".join(rec.get("rules_fired", []))
    history = [r for r in rows if r.reached is not None and r.trial is not None]
    if len(history) > 1:
        rep.add_figure(
            Figure(
                "choice_history",
                "Search history",
                "image/svg+xml",
                history_svg(history, sel.get("metric") or "metric", sel.get("mode") or "max"),
                "Each trial's validation metric by trial number (open: pruned at a rung); the line: best so far.",
            )
        )
    trained = [r for r in rows if r.value is not None]
    if trained:
        rep.add_figure(
            Figure(
                "choice_pareto",
                f"{sel.get('metric')} vs latency",
                "image/svg+xml",
                scatter_svg(trained, sel.get("metric") or "metric", sel.get("winner")),
                "Each trained candidate; filled: on the Pareto front of metric and latency; ringed: chosen.",
            )
        )


def saved_bench(design_dir: Path) -> Any:
    """The design's own benchmark (``bench.json``) as a BenchResult, or None."""
    path = design_dir / DesignDir.BENCH
    if not path.is_file():
        return None
    from archlab.bench.result import BenchResult

    return BenchResult.from_dict(json.loads(path.read_text(encoding="utf-8")))


def scatter_svg(rows: list[CandidateRow], metric: str, winner: str | None) -> str:
    """Validation metric (y) against batch-1 latency (x, ms), one labelled dot per trained candidate."""
    xs = [float(r.latency_ms or 0.0) for r in rows]
    ys = [float(r.value or 0.0) for r in rows]
    x_hi = max(xs) * 1.15 if max(xs) > 0 else 1.0
    y_lo, y_hi = min(ys), max(ys)
    if math.isclose(y_lo, y_hi):
        y_lo, y_hi = y_lo - 0.05 * (abs(y_lo) or 1), y_hi + 0.05 * (abs(y_hi) or 1)
    pad = 0.1 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    pw, ph = _W - 2 * _PAD, _H - 2 * _PAD

    def px(x: float) -> float:
        return _PAD + pw * x / x_hi

    def py(y: float) -> float:
        return _PAD + ph * (1 - (y - y_lo) / (y_hi - y_lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{escape(metric)} vs latency" font-family="sans-serif" font-size="11">',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<text x="{_W / 2}" y="{_H - 12}" text-anchor="middle">latency p50, batch 1 (ms)</text>',
        f'<text x="14" y="{_H / 2}" text-anchor="middle" transform="rotate(-90 14 {_H / 2})">{escape(metric)}</text>',
    ]
    for i in range(5):
        xv, yv = x_hi * i / 4, y_lo + (y_hi - y_lo) * i / 4
        parts.append(f'<text x="{px(xv):.1f}" y="{_H - _PAD + 14}" text-anchor="middle">{xv:.3g}</text>')
        parts.append(f'<text x="{_PAD - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
    front = sorted((p for p in zip(xs, ys, rows) if p[2].pareto), key=lambda p: p[0])
    if len(front) > 1:
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in front)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#4878a8" stroke-dasharray="4 3"/>')
    for x, y, r in zip(xs, ys, rows):
        fill = "#4878a8" if r.pareto else "#fff"
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="{fill}" stroke="#4878a8"/>')
        if r.name == winner:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="9" fill="none" stroke="#c0392b"/>')
        anchor = "end" if px(x) > _W * 0.6 else "start"
        dx = -10 if anchor == "end" else 10
        parts.append(f'<text x="{px(x) + dx:.1f}" y="{py(y) - 8:.1f}" text-anchor="{anchor}">{escape(r.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _status(r: CandidateRow, choice: dict[str, Any]) -> str:
    if r.trial is not None and r.trial == choice.get("winner_trial"):
        return "chosen"
    if not r.fits:
        return "over budget: not trained"
    if r.state == "pruned":
        return "pruned early"
    if r.error:
        return f"failed: {r.error[:160]}"
    return "" if r.trained else "not trained"


def choice_rows(rep: DesignReport) -> list[list[str]]:
    """The search's trials and the baselines as text cells (HTML and Markdown share them)."""
    choice = rep.choice or {}
    out = []
    for r in map(CandidateRow.from_dict, choice.get("rows", [])):
        reached = r.value if r.value is not None else r.reached
        value = "" if reached is None else f"{reached:.4g}"
        if r.cv and r.cv.get("std") is not None:
            value += f" ± {r.cv['std']:.2g} ({r.cv['k']}-fold)"
        out.append(
            [
                r.name,
                r.family or "",
                f"{r.params:,}" if r.params is not None else "",
                f"{r.latency_ms:.3g}" if r.latency_ms is not None else "",
                ", ".join(f"{k} {v:.2g}" for k, v in r.recipe.items() if isinstance(v, (int, float))),
                value,
                "yes" if r.pareto else "",
                _status(r, choice),
            ]
        )
    for b in choice.get("baselines", []):
        value = "" if b.get("val") is None else f"{b['val']:.4g}"
        out.append([b["name"], "baseline", "", "", "", value, "", b.get("note") or "baseline"])
    return out


def history_svg(rows: list[CandidateRow], metric: str, mode: str) -> str:
    """The search's optimisation history: each trial's value, and the best so far."""
    pts = sorted((int(r.trial or 0), float(r.reached or 0.0), r.state == "pruned") for r in rows)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def px(x: float) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def py(y: float) -> float:
        return _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)

    best, line = None, []
    for x, y, pruned in pts:
        if not pruned and (best is None or (y > best if mode == "max" else y < best)):
            best = y
        if best is not None:
            line.append(f"{px(x):.1f},{py(best):.1f}")
    dots = "".join(
        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{"none" if pruned else "#1f77b4"}" stroke="#1f77b4"/>'
        for x, y, pruned in pts
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}">'
        f'<polyline points="{" ".join(line)}" fill="none" stroke="#d62728"/>{dots}'
        f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle">trial</text>'
        f'<text x="12" y="{_H / 2}" transform="rotate(-90 12 {_H / 2})" text-anchor="middle">{escape(metric)}</text>'
        f'<text x="{_PAD}" y="{_H - _PAD + 16}">{x0}</text><text x="{_W - _PAD}" y="{_H - _PAD + 16}" '
        f'text-anchor="end">{x1}</text><text x="{_PAD - 4}" y="{py(y0):.1f}" text-anchor="end">{y0:.3g}</text>'
        f'<text x="{_PAD - 4}" y="{py(y1):.1f}" text-anchor="end">{y1:.3g}</text></svg>'
    )


CHOICE_COLUMNS = ["Trial", "Family", "Parameters", "Latency b=1 (ms)", "Recipe", "Validation metric", "Pareto", ""]
