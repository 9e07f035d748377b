"""``archlab report SUBJECT -o FILE [--compare A B C] [--no-bench]``: the design report.

SUBJECT is a registry name, a saved model, a run directory or a design directory (``archlab
design``: the winner's report and why it was chosen); the format follows FILE's
extension (.html, .md, .json). With ``--compare``, the names after SUBJECT are drawn beside it
(a comparison figure: parameters on a log scale, FLOPs, memory, latency, test metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archlab.cli.app import console
from archlab.errors import ConfigError


def report_cmd(
    subjects: list[str] = typer.Argument(
        ..., help="Registry name, run directory or design directory (with --compare: several)."
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="Report file: .html, .md or .json."),
    compare: bool = typer.Option(False, "--compare", help="Put the other SUBJECTs beside the first one."),
    no_bench: bool = typer.Option(False, "--no-bench", help="Skip the benchmark and deployment measurements."),
    no_deploy: bool = typer.Option(False, "--no-deploy", help="Skip the deployment measurements only (~1 min)."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Latency budget (p99 at batch 1)."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="RAM budget to serve at batch 1."),
    size_mb: Optional[float] = typer.Option(None, "--size-mb", help="Artifact size budget."),
) -> None:
    """Write the design report: architecture, parameters, layers, data flow, benchmarks, deployment."""
    from archlab.report.document import build_report
    from archlab.report.output import write_report

    if len(subjects) > 1 and not compare:
        raise ConfigError(f"got {len(subjects)} subjects; give one, or add --compare to put them side by side")
    if compare and len(subjects) < 2:
        raise ConfigError("--compare needs at least two subjects: archlab report A --compare B C")
    with console.status(f"gathering the report on {subjects[0]} ..."):
        rep = build_report(
            subjects[0],
            bench=not no_bench,
            deploy=not (no_bench or no_deploy),
            compare=subjects[1:] or None,
            latency_ms=latency_ms,
            memory_mb=memory_mb,
            size_mb=size_mb,
        )
    path = write_report(rep, out)
    for sid, why in rep.skipped.items():
        console.print(f"[yellow]{sid}[/]: {why}", highlight=False)
    console.print(f"report written to [bold]{path}[/] in {rep.timings_s.get('total', 0):.1f} s", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report")(report_cmd)
