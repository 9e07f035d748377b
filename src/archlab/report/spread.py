"""The spread of a CV or seed group: mean ± std and the 95% interval of every metric.

A group parent (``group.json``, written by :mod:`archlab.runs.cv` / :mod:`archlab.runs.seeds`)
holds one run per fold or seed and a summary (``cv_summary.json`` / ``seeds_summary.json``) with,
per metric, the mean, sample std and 95% Student-t interval over the members (for folds the
Nadeau-Bengio corrected one, which accounts for the training samples folds share, named in the
metric's ``interval``). This module reads
those files (it computes nothing, so the report shows the numbers the group wrote) and renders
them; the design report of a group, or of one of its members, adds the table beside the run's
own final metrics, so a single fold's or seed's figure is never shown without its spread.
"""

from __future__ import annotations

import html
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archlab.display import NotebookDisplay
from archlab.report.dispatch import register_renderers
from archlab.rundir import RunDir

log = logging.getLogger("archlab.report")

#: a group kind -> its summary file (written by archlab.runs.cv / archlab.runs.seeds)
_KIND_WORDS = {"cv": "cross-validation folds", "seeds": "training seeds"}


@dataclass
class GroupSpread(NotebookDisplay):
    """Per metric ``{mean, std, ci95_low, ci95_high, n}`` of a group, and each member's value.

    Attributes:
        path: the group parent.
        kind: ``"cv"`` or ``"seeds"``.
        members: member directory names, in order.
        metrics: metric -> summary (as the group's summary file has it).
        values: metric -> one value per member.
        member: the member the report is about (None for the group itself).
    """

    path: str
    kind: str
    members: list[str]
    metrics: dict[str, dict[str, Any]]
    values: dict[str, list[float]] = field(default_factory=dict)
    member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_group(path: str | os.PathLike) -> Path | None:
    """The group parent ``path`` is (or is a member of), else None."""
    p = Path(path)
    for candidate in (p, p.parent):
        if (candidate / RunDir.GROUP).is_file():
            return candidate
    return None


def group_spread(path: str | os.PathLike) -> GroupSpread | None:
    """The spread of the group ``path`` is or belongs to; None when it is no group or unfinished."""
    parent = find_group(path)
    if parent is None:
        return None
    try:
        kind = json.loads((parent / RunDir.GROUP).read_text(encoding="utf-8")).get("kind")
        summary_file = parent / RunDir.SUMMARIES.get(kind, "summary.json")
        if not summary_file.is_file():
            log.info("%s: group not finished (no %s); no spread to show", parent, summary_file.name)
            return None
        saved = json.loads(summary_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("report: cannot read the group at %s: %s", parent, exc)
        return None
    members = [m["run_dir"] for m in saved.get("members", [])]
    metrics = saved.get("metrics") or {}
    values = {k: [m["metrics"].get(k) for m in saved.get("members", [])] for k in metrics}
    member = Path(path).name if Path(path) != parent else None
    return GroupSpread(str(parent), str(kind), members, metrics, values, member)


def member_subject(subject: Any) -> Any:
    """A group parent -> its first member's run directory (what the design report describes);
    anything else as it is."""
    if not isinstance(subject, (str, os.PathLike)) or not (Path(subject) / RunDir.GROUP).is_file():
        return subject
    spread = group_spread(subject)
    names = spread.members if spread else sorted(p.name for p in Path(subject).iterdir() if p.is_dir())
    runs = [Path(subject) / n for n in names if (Path(subject) / n / RunDir.CONFIG).is_file()]
    if not runs:
        from archlab.errors import ConfigError

        raise ConfigError(f"{subject} is a run group with no member run yet (no */config.yaml)")
    return runs[0]


# ----------------------------------------------------------------------------------- rendering
def _rows(s: GroupSpread) -> list[list[str]]:
    rows = []
    for name, m in s.metrics.items():
        if name in ("step", "epoch"):
            continue
        each = ", ".join(f"{v:.4g}" if isinstance(v, (int, float)) else "-" for v in s.values.get(name, []))
        rows.append(
            [
                name,
                f"{m['mean']:.4g} ± {m['std']:.2g}",
                f"[{m['ci95_low']:.4g}, {m['ci95_high']:.4g}]",
                str(m["n"]),
                each,
            ]
        )
    return rows


_HEAD = ["metric", "mean ± std", "95% interval", "n", "per member"]


def _intro(s: GroupSpread) -> str:
    who = f" This run is {s.member}, one of them." if s.member else ""
    corrected = sorted({m["interval"] for m in s.metrics.values() if m.get("interval")})
    how = f"; {', '.join(corrected)} where the folds' test/train ratio is known" if corrected else ""
    return (
        f"Over {len(s.members)} {_KIND_WORDS.get(s.kind, 'runs')} ({', '.join(s.members)}): mean, sample std "
        f"and 95% Student-t interval of the mean{how}.{who}"
    )


def _as_spread(s: GroupSpread | dict[str, Any] | None) -> GroupSpread | None:
    """The design report keeps the spread as its JSON dict; the renderers take either."""
    return GroupSpread(**s) if isinstance(s, dict) else s


def spread_markdown(s: GroupSpread | dict[str, Any] | None) -> str:
    """A Markdown section (empty string for None)."""
    s = _as_spread(s)
    if s is None:
        return ""
    lines = ["### Spread over the group", "", _intro(s), "", "| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(s)]
    return "\n".join(lines) + "\n"


def spread_html(s: GroupSpread | dict[str, Any] | None) -> str:
    """An HTML fragment (escaped; empty string for None)."""
    s = _as_spread(s)
    if s is None:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEAD)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in _rows(s))
    return (
        f'<div class="spread"><h3>Spread over the group</h3><p>{html.escape(_intro(s))}</p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def spread_text(s: GroupSpread) -> str:
    """Plain text, one line per metric."""
    return _intro(s) + "\n" + "\n".join(f"{r[0]}: {r[1]} 95% {r[2]} (n={r[3]})" for r in _rows(s)) + "\n"


def spread_rich(s: GroupSpread):
    """A rich table."""
    from rich.table import Table

    table = Table(title=f"Spread over {len(s.members)} {_KIND_WORDS.get(s.kind, 'runs')}")
    for h in _HEAD:
        table.add_column(h)
    for r in _rows(s):
        table.add_row(*r)
    return table


register_renderers(GroupSpread, rich=spread_rich, md=spread_markdown, text=spread_text, html=spread_html)
