"""Entry point of the ``archlab`` command: register the command modules, run, print errors in one line.

Start-up stays light (``archlab --help`` imports neither torch nor pydantic): ``archlab`` is a lazy
package and the command modules import the layers inside their commands.
"""

from __future__ import annotations

import logging
import sys

import typer

from archlab.cli.app import app, err_console
from archlab.errors import ArchlabError


@app.callback()
def _global_options(
    plugin: list[str] = typer.Option(
        [],
        "--plugin",
        metavar="MODULE",
        help="Import MODULE first, so the models it registers with archlab.register are available "
        "(models, summary, train, ...). Repeatable.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of a failure."),  # main() reads it
) -> None:
    """A PyTorch workbench for designing neural networks."""
    if plugin:
        from archlab.registry import load_plugin

        for module in plugin:
            load_plugin(module)


def _register_commands() -> None:
    # Each module adds its commands to `app` when imported; one line per command module.
    from archlab.cli import analysis, data, design, generate, models, train  # noqa: F401
    from archlab.cli import recommend as recommend_cli
    from archlab.cli import report as report_cli
    from archlab.cli import serve as serve_cli

    recommend_cli.register(app)
    report_cli.register(app)
    serve_cli.register(app)
    try:
        from archlab.cli import bench
    except ImportError:  # pragma: no cover - the bench layer is optional until it lands
        return
    bench.register(app)


def _one_line(exc: BaseException) -> str:
    from rich.markup import escape  # a message may hold "[...]" (e.g. torch's "[file.cc:152]"): text, not markup

    return escape(" ".join(str(exc).split()))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Every failure prints one line on stderr and exits non-zero (``--debug`` re-raises)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    # archlab's own messages at INFO; other libraries (onnxscript, onnxruntime, torch.onnx) only
    # when something is wrong, unless --debug.
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    logging.getLogger("archlab").setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    _register_commands()
    from typer.exceptions import TyperException  # base of typer's (vendored click's) usage errors

    try:
        # standalone_mode=False: click returns a command's typer.Exit code instead of exiting
        code = app(args=argv, standalone_mode=False)
    except ArchlabError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]{type(exc).__name__}:[/] {_one_line(exc)}", highlight=False, markup=True)
        return 2
    except typer.Abort:
        err_console.print("aborted", highlight=False)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except TyperException as exc:
        if debug:
            raise
        hint = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_console.print(f"[bold red]UsageError:[/] {_one_line(hint)} (see archlab --help)", highlight=False)
        return getattr(exc, "exit_code", 2) or 2
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        return 130
    except Exception as exc:  # a failure archlab did not anticipate: still one line, the traceback on --debug
        if debug:
            raise
        err_console.print(
            f"[bold red]{type(exc).__name__}:[/] {_one_line(exc)} (unexpected; run with --debug for the traceback)",
            highlight=False,
            markup=True,
        )
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
