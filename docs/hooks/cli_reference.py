"""mkdocs hook: the CLI reference page, generated at build time from the typer app itself.

``reference/cli.md`` is not a file in the repository: on every build this hook walks the click
command tree typer builds (the same objects ``archlab --help`` prints) and writes one section per
command with its usage, its help text and a table of its arguments and options. A new command
or option appears on the next build; nothing is copied by hand.
"""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _param_row(param: Any, ctx: Any) -> str:
    """One table row: the option's names and metavar, and its help with the default, as ``--help`` shows them."""
    record = param.get_help_record(ctx)
    if record is None:  # a positional argument without help
        record = (param.name.upper(), "")
    names, help_text = record
    return f"| `{_cell(names)}` | {_cell(help_text)} |"


def _context(cmd: Any, name: str, parent: Any = None) -> Any:
    # the command's own Context class: typer ships its own copy of click's
    return cmd.context_class(cmd, info_name=name, parent=parent)


def _command(name: str, cmd: Any, parent: Any) -> list[str]:
    ctx = _context(cmd, name, parent)
    usage = " ".join(["archlab", name, *cmd.collect_usage_pieces(ctx)])
    out = [f"## `archlab {name}`", "", "```", usage, "```", "", (cmd.help or "").strip(), ""]
    params = [p for p in cmd.get_params(ctx) if p.name != "help"]
    if params:
        out += ["| argument / option | what |", "|---|---|"] + [_param_row(p, ctx) for p in params] + [""]
    return out


def cli_markdown() -> str:
    """The whole CLI reference as Markdown."""
    import typer

    from archlab.cli.main import _register_commands, app

    _register_commands()
    group = typer.main.get_command(app)
    ctx = _context(group, "archlab")
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `archlab` command itself when this site was built (`docs/hooks/cli_reference.py`);",
        "`archlab COMMAND --help` prints the same in a terminal.",
        "",
        "## `archlab`",
        "",
        (group.help or "").strip(),
        "",
        "| option | what |",
        "|---|---|",
    ]
    lines += [_param_row(p, ctx) for p in group.get_params(ctx) if p.name != "help"] + [""]
    for name in sorted(group.list_commands(ctx)):
        lines += _command(name, group.get_command(ctx, name), ctx)
    return "\n".join(lines) + "\n"


def on_files(files: Files, config, **kwargs) -> Files:
    files.append(File.generated(config, PAGE, content=cli_markdown()))
    return files
