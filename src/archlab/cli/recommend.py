"""``archlab recommend DATA`` and ``archlab autosize NAME``: the advisor and auto-sizing.

Exposed by :func:`register` (``register(app)`` in ``cli/main.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from archlab.errors import ConfigError

FORMATS = ("table", "md", "json")


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def _data_options(items: list[str]) -> dict:
    """``--set data.KEY=V`` (or plain ``KEY=V``) items as loader options."""
    from archlab.cli.app import parse_overrides

    parsed = parse_overrides(items)
    options = parsed.pop("data", {})
    if not isinstance(options, dict):
        raise ConfigError(f"--set data.KEY=V sets a loader option; got data={options!r}")
    return {**parsed, **options}


def recommend_cmd(
    data: str = typer.Argument(..., help="Dataset name or path (archlab datasets)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task (default: the dataset's)."),
    latency_ms: Optional[float] = typer.Option(
        None, "--latency-ms", help="Most ms per forward at --batch on this CPU."
    ),
    params_max: Optional[int] = typer.Option(None, "--params-max", help="Most parameters."),
    flops_max: Optional[int] = typer.Option(None, "--flops-max", help="Most forward FLOPs at --batch."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="Most training memory (MiB)."),
    size_mb: Optional[float] = typer.Option(None, "--size-mb", help="Most MB of fp32 weights."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size for latency / FLOPs (default 1)."),
    streaming: bool = typer.Option(False, "--streaming", help="The model must run step by step (on-device)."),
    top: int = typer.Option(5, "--top", "-k", help="How many candidates."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | json"),
    set_: list[str] = typer.Option(
        [],
        "--set",
        "-s",
        help="Loader option data.KEY=V, as for archlab train (e.g. data.time=date data.target=units; repeatable).",
    ),
) -> None:
    """Rank architectures for a dataset and budgets, with the rules behind each."""
    from archlab.advise import recommend
    from archlab.cli.app import console
    from archlab.report.design import recommendation_markdown, recommendation_rich

    _check_format(fmt)
    rec = recommend(
        data,
        task=task,
        latency_ms=latency_ms,
        params_max=params_max,
        flops_max=flops_max,
        memory_mb=memory_mb,
        size_mb=size_mb,
        batch=batch,
        streaming=streaming,
        top=top,
        data_options=_data_options(set_),
    )
    if fmt == "json":
        typer.echo(json.dumps(rec.to_dict(), indent=2, default=str))
    elif fmt == "md":
        typer.echo(recommendation_markdown(rec))
    else:
        console.print(recommendation_rich(rec))


def autosize_cmd(
    name: str = typer.Argument(..., help="Registered model name (archlab models)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Fit inputs/outputs to this dataset first."),
    params_max: Optional[int] = typer.Option(None, "--params-max", help="Most parameters."),
    flops_max: Optional[int] = typer.Option(None, "--flops-max", help="Most forward FLOPs at --batch."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Most ms per forward at --batch (measured)."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="Most training memory (MiB)."),
    batch: int = typer.Option(1, "--batch", help="Batch size for FLOPs, memory and latency."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the model: section as YAML here."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | json"),
) -> None:
    """Size a model family to the largest config within the budgets."""
    from archlab.advise import autosize
    from archlab.cli.app import console
    from archlab.io import atomic_write_text
    from archlab.report.design import sized_markdown, sized_rich

    _check_format(fmt)
    sized = autosize(
        name, data, params_max=params_max, flops_max=flops_max, latency_ms=latency_ms, memory_mb=memory_mb, batch=batch
    )
    if out is not None:
        atomic_write_text(out, sized.to_yaml())
    if fmt == "json":
        typer.echo(json.dumps(sized.to_dict(), indent=2, default=str))
    elif fmt == "md":
        typer.echo(sized_markdown(sized))
    else:
        console.print(sized_rich(sized))
        if out is not None:
            console.print(f"model section written to [bold]{out}[/]")


def register(app: typer.Typer) -> None:
    """Add ``recommend`` and ``autosize`` to ``app``."""
    app.command("recommend")(recommend_cmd)
    app.command("autosize")(autosize_cmd)
