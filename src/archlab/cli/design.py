"""``archlab design DATA [budgets] -o DIR`` / ``archlab design --resume DIR``: the end-to-end pipeline.

Shows which step it is in and the training time left of the budget; prints a short summary at
the end (chosen model and why, test metric, latency, size) and where ``report.html`` is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from archlab.cli.app import app, console, err_console
from archlab.errors import ConfigError


class _StepLines:
    """One line per step event on stderr: ``[4/9] candidates · training cnn_digits (2/3) · 41 s of budget left``."""

    def __call__(self, e: dict[str, Any]) -> None:
        if e["state"] == "done" and not e["detail"]:
            return
        colour = {"start": "bold cyan", "skipped": "dim", "done": "yellow"}.get(e["state"], "cyan")
        words = [e["state"]] if e["state"] != "progress" else []
        words += [e["detail"]] if e["detail"] else []
        err_console.print(
            f"[{colour}][{e['index']}/{e['total']}] {e['step']}[/] {' · '.join(words)}"
            f" · [bold]{e['budget_left_s']:.0f} s[/] of training budget left",
            highlight=False,
        )


@app.command("design")
def design_cmd(
    data: Optional[str] = typer.Argument(None, help="Dataset name or path (omit with --resume)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Design directory to write."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the design in this directory."),
    task: Optional[str] = typer.Option(None, "--task", help="Task, when the data serves several."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Most ms per forward at batch 1 (CPU)."),
    params_max: Optional[int] = typer.Option(None, "--params-max", help="Most parameters."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="Most training memory (MiB)."),
    budget_s: float = typer.Option(120.0, "--budget-s", help="Seconds of training in all (candidates + winner)."),
    candidates: int = typer.Option(3, "--candidates", help="How many of the advisor's top presets to try."),
    seed: int = typer.Option(0, "--seed", help="The training seed of every run."),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="Optuna storage URL of the search (default: study.db in the design directory)."
    ),
    study: Optional[str] = typer.Option(None, "--study", help="Study name in --storage (default: design)."),
    join: Optional[str] = typer.Option(
        None, "--join", help="Work on the study --study in this storage URL (another worker's design)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (step lines only)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also every run's own log lines."),
    set_: list[str] = typer.Option(
        [], "--set", help="data.KEY=V (a loader option, e.g. data.target=price) or train.KEY=V (the shared recipe)"
    ),
) -> None:
    """Inspect, recommend, size, train candidates, pick, train the winner, benchmark, export, report."""
    import logging

    from archlab.cli.progress import ProgressBar
    from archlab.runs.design import design, resume_design

    if not verbose and logging.getLogger("archlab").getEffectiveLevel() >= logging.INFO:  # not --debug
        import warnings

        import torch  # noqa: F401 - torch sets its loggers' levels when imported: quiet them after

        # the step lines say where the design is; each run's data / cost lines, the ONNX
        # exporter's notes (no torchvision ops) and a torch deprecation inside it are noise here
        logging.getLogger("archlab").setLevel(logging.WARNING)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        import optuna  # optuna configures its own handler on import: quiet it after

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # the step lines say what each trial did
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)

    progress, reporter = _StepLines(), None if quiet else ProgressBar()
    if join is not None:
        from archlab.runs.design import join_design

        if data is not None or out is not None or resume is not None or study is None:
            raise ConfigError("--join URL takes --study NAME and nothing else: the study holds the design's arguments")
        n = join_design(join, study, progress=progress, reporter=reporter)
        console.print(f"Ran {n} trials of study {study!r}; the design's own process selects and reports.")
        return
    if resume is not None:
        if data is not None or out is not None:
            raise ConfigError("--resume DIR continues a design with its saved arguments; give no DATA or -o with it")
        res = resume_design(resume, progress=progress, reporter=reporter)
    else:
        if data is None or out is None:
            raise ConfigError("archlab design needs DATA and -o DIR (or --resume DIR)")
        res = design(
            data,
            out_dir=out,
            task=task,
            latency_ms=latency_ms,
            params_max=params_max,
            memory_mb=memory_mb,
            budget_s=budget_s,
            candidates=candidates,
            seed=seed,
            storage=storage,
            study=study,
            progress=progress,
            reporter=reporter,
            **_sections(set_),
        )
    _summary(res)


def _sections(items: list[str]) -> dict[str, Any]:
    """``--set data.K=V`` / ``train.K=V`` items as ``design``'s ``data_options`` / ``train``."""
    from archlab.cli.app import parse_overrides

    out: dict[str, Any] = {}
    for key, value in parse_overrides(items).items():
        section = {"data": "data_options", "train": "train"}.get(key)
        if section is None or not isinstance(value, dict):
            raise ConfigError(f"--set takes data.KEY=V or train.KEY=V in archlab design; got {key}={value!r}")
        out[section] = value
    return out


def _summary(res: Any) -> None:
    steps = res.manifest["steps"]
    bench = steps["benchmark"].get("result") or {}
    exp = steps["export"].get("result") or {}
    tests = ", ".join(f"{k} {v:.4g}" for k, v in res.test_metrics.items() if "loss" not in k) or "no test split"
    _trials_table(res.manifest)
    if res.verdict:
        console.print(f"\n[bold]{res.verdict}[/]", highlight=False)
    console.print(f"\n[bold]Chosen model:[/] {res.winner}", highlight=False)
    console.print(f"  why: {res.why}", highlight=False)
    console.print(f"  test: {tests}", highlight=False)
    if bench.get("latency_ms_b1") is not None:
        console.print(f"  latency: {bench['latency_ms_b1']:.3g} ms at batch 1 ({bench['backend_b1']})", highlight=False)
    if exp:
        parity = "parity with eager passed" if exp.get("parity_ok") else "parity FAILED"
        console.print(f"  size: {exp['size_bytes'] / 1e6:.2f} MB ONNX ({parity})", highlight=False)
    for name in ("benchmark", "export", "report"):
        if steps[name].get("error"):
            console.print(f"  [yellow]{name}[/]: {steps[name]['error']}", highlight=False)
    if res.report is not None:
        console.print(f"Report: [bold]{res.report}[/]", highlight=False)


def _trials_table(manifest: dict[str, Any]) -> None:
    """The search's trials and the baselines, one row each, best first."""
    from rich.table import Table

    from archlab.report.choice import CandidateRow

    sel = manifest["steps"]["select"].get("result") or {}
    table = Table(title=f"Search: {sel.get('metric', '')} ({sel.get('mode', '')})", show_lines=False)
    for col in ("trial", "model", "width", "lr x", "state", "value"):
        table.add_column(col)
    for r in map(CandidateRow.from_dict, sel.get("rows", [])):
        value = r.value if r.value is not None else r.reached
        table.add_row(
            "" if r.trial is None else str(r.trial),
            r.preset or r.name,
            str(r.recipe.get("width", "")),
            f"{r.recipe['lr_mult']:.2g}" if "lr_mult" in r.recipe else "",
            r.state or "",
            "" if value is None else f"{value:.4g}",
        )
    for b in (manifest["steps"].get("baselines", {}).get("result") or {}).get("rows", []):
        value = b.get("val")
        table.add_row("", b["name"], "", "", "baseline", b.get("note") if value is None else f"{value:.4g}")
    console.print(table)
