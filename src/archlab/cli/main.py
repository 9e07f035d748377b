"""Entry point of the ``archlab`` command. Each command lives in its own module under cli/."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from archlab.errors import ArchlabError

app = typer.Typer(
    name="archlab",
    help="A PyTorch workbench for designing neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _register_commands() -> None:
    # Each module adds its commands to `app`; one import line per command module.
    from archlab.cli import models  # noqa: F401
    from archlab.cli import train  # noqa: F401
    from archlab.cli import analysis  # noqa: F401
    from archlab.cli import data  # noqa: F401
    from archlab.cli import generate  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; archlab's own errors print one clear line and exit with status 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _register_commands()
    try:
        app(args=argv, standalone_mode=False)
    except ArchlabError as exc:
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click usage errors
        return int(exc.code or 0)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
