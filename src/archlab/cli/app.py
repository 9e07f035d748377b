"""The typer application and the consoles every command module prints with."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="archlab",
    help="A PyTorch workbench for designing neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
# Errors go on one line whatever the terminal width (no hard wrap when stderr is a pipe).
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 10_000)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """:func:`archlab.config.parse_overrides`, imported when a command runs: command modules import
    this one at start-up, and pydantic alone takes a fifth of a second to import."""
    from archlab.config import parse_overrides as parse

    return parse(items)


def say_weights(weights: Any, *, to_stderr: bool = False) -> None:
    """Which checkpoint answered for a run (a :class:`archlab.rundir.FinalWeights`), as the first
    line of a command's output: dim for the run's final model, bold yellow for a fallback."""
    style = "bold yellow" if weights.is_fallback else "dim"
    out = err_console if to_stderr else console
    out.print(weights.describe(), style=style, markup=False, highlight=False, soft_wrap=True)
