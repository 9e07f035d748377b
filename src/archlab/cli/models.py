"""``archlab models`` (list the registry) and ``archlab show NAME`` (config + module tree)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.syntax import Syntax
from rich.table import Table

from archlab.cli.app import app, console


@app.command("models")
def models_cmd(
    pattern: Optional[str] = typer.Argument(None, help="Glob on the name, e.g. '*resnet*'."),
    family: Optional[str] = typer.Option(None, "--family", "-f", help="Glob on the family."),
    modality: Optional[str] = typer.Option(
        None, "--modality", "-m", help="image, time_series, text, tabular, graph, points."
    ),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="classification, regression, forecasting, ..."),
) -> None:
    """List registered models with their family, modalities, tasks and when to use them."""
    from archlab.registry import get_entry, list_models

    names = list_models(pattern, family=family, modality=modality, task=task)
    table = Table(title=f"archlab models ({len(names)})", show_lines=False)
    for col in ("name", "family", "modalities", "tasks", "description"):
        table.add_column(col, overflow="fold")
    for name in names:
        e = get_entry(name)
        table.add_row(name, e.family, ", ".join(e.modalities), ", ".join(e.tasks), e.description)
    console.print(table)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="A registered model name."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Config override key=value (repeatable)."),
) -> None:
    """Print a model's capabilities, validated config (YAML) and module tree."""
    from archlab.config import parse_overrides
    from archlab.registry import create, get_entry

    entry = get_entry(name)
    model = create(name, device="meta", **parse_overrides(set_))
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"[bold]{name}[/] ({entry.family}) - {entry.description}")
    console.print(f"when to use: {entry.when_to_use}")
    console.print(f"modalities: {', '.join(entry.modalities)}; tasks: {', '.join(entry.tasks)}")
    console.print(f"parameters: {n_params:,}")
    console.print(Syntax(model.config.to_yaml(), "yaml", theme="ansi_dark"))
    console.print(str(model), highlight=False, markup=False)
