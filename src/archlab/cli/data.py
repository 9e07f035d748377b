"""``archlab datasets``: the bundled datasets with modality, size, tasks and source package."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from archlab.cli.app import app, console


@app.command("datasets")
def datasets_cmd(
    modality: Optional[str] = typer.Option(
        None, "--modality", "-m", help="image, tabular, signal, sequence, text, graph, points."
    ),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="classification, regression, forecasting, ..."),
) -> None:
    """List bundled datasets (installed with archlab[data]; nothing is downloaded)."""
    from archlab.data import list_datasets

    rows = list_datasets(modality=modality, task=task)
    table = Table(title=f"archlab datasets ({len(rows)})")
    for col in ("name", "modality", "size", "tasks", "source", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["modality"], r["size"], ", ".join(r["tasks"]), r["source"], r["description"])
    console.print(table)
    console.print(
        "Load one with archlab.data.load(NAME), or give a file path (CSV, image folder, .txt, "
        ".npy/.npz, MNIST IDX, CIFAR-10 batches, .ts/.tsv, edge list).",
        highlight=False,
    )
