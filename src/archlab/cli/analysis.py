"""``archlab summary``, ``archlab diagram`` and ``archlab compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archlab.cli.app import app, console, parse_overrides, say_weights
from archlab.errors import ConfigError
from archlab.report import render

_FORMATS = ("table", "md", "json", "html")
_DIAGRAM_EXTENSIONS = (".svg", ".mmd", ".mermaid", ".dot", ".gv")
_CHART_EXTENSIONS = (".png", ".svg")


def _shape(text: Optional[str]):
    if text is None:
        return None
    try:
        return [tuple(int(v) for v in part.split(",") if v.strip()) for part in text.split(";")]
    except ValueError:
        raise ConfigError(f"--input-shape must look like 1,3,224,224 (';' between inputs); got {text!r}") from None


def _say_run_weights(target: str, to_stderr: bool) -> None:
    """For a run directory: which checkpoint was described, first (a fallback flagged, with why)."""
    from archlab.rundir import RunDir, final_weights

    path = Path(target)
    if not RunDir(path).has_config or (path / "config.json").is_file():
        return

    weights = final_weights(path, RunDir(path).read_config())
    if weights is not None:
        say_weights(weights, to_stderr=to_stderr)


@app.command("summary")
def summary_cmd(
    target: str = typer.Argument(..., help="A registered model name or a run directory (with config.json)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Config override key=value (repeatable)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="e.g. 1,3,224,224 (float input)."),
    depth: int = typer.Option(3, "--depth", "-d", help="Deepest module level shown."),
    device: str = typer.Option("meta", "--device", help="meta (allocates nothing) or cpu."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Batch size for shapes and memory."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, json or html."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal."),
) -> None:
    """Layer-by-layer shapes, parameters, FLOPs/MACs, memory and receptive field."""
    from archlab.analysis import summary

    if fmt not in _FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(_FORMATS)}; got {fmt!r}")
    s = summary(
        target,
        input_shape=_shape(input_shape),
        depth=depth,
        device=device,
        batch_size=batch_size,
        overrides=parse_overrides(set_),
    )
    _say_run_weights(target, to_stderr=fmt != "table" and output is None)
    if fmt == "table" and output is None:
        console.print(render(s, "rich"))
        return
    text = render(s, {"table": "text"}.get(fmt, fmt))
    if output is not None:
        from archlab.io import atomic_write_text

        atomic_write_text(output, text)
        console.print(f"wrote {output}")
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("diagram")
def diagram_cmd(
    target: str = typer.Argument(..., help="A registered model name or a run directory."),
    output: Path = typer.Option(..., "--output", "-o", help="out.svg, out.mmd (Mermaid) or out.dot (Graphviz)."),
    depth: int = typer.Option(2, "--depth", "-d", help="Module level drawn as nodes."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Config override key=value (repeatable)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="e.g. 1,3,224,224."),
    no_collapse: bool = typer.Option(False, "--no-collapse", help="Draw every repeated block."),
) -> None:
    """Data-flow diagram (SVG without Graphviz, Mermaid or DOT)."""
    from archlab.analysis.diagram import diagram

    if output.suffix.lower() not in _DIAGRAM_EXTENSIONS:  # fail on an unknown extension before any work
        raise ConfigError(
            f"unknown diagram format {output.suffix or '(no extension)'!r} for {str(output)!r}; "
            f"use one of {', '.join(_DIAGRAM_EXTENSIONS)}"
        )
    g = diagram(
        target,
        input_shape=_shape(input_shape),
        depth=depth,
        collapse_repeats=not no_collapse,
        overrides=parse_overrides(set_),
    )
    render(g, out=output)
    console.print(f"wrote {output} ({len(g.nodes)} nodes, {len(g.edges)} edges)")
    for note in g.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command("compare")
def compare_cmd(
    targets: list[str] = typer.Argument(
        ..., help="Registered model names or saved models; or two training runs / CV or seed groups."
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Chart file: .png or .svg."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or md (runs: also json)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="One input for every model, e.g. 1,3,32,32."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Runs: the test metric (default test_accuracy)."),
    test: str = typer.Option(
        "auto", "--test", help="Two runs: auto / mcnemar (McNemar's test) or bootstrap (paired BCa bootstrap)."
    ),
) -> None:
    """Parameters, FLOPs and memory side by side (each at the input shown), with an optional chart.

    Given two training runs (or two CV / seed groups), compares their test metric instead with the
    test their design calls for (McNemar over the shared test samples, paired t over matched seeds,
    Nadeau-Bengio corrected t over matched folds, Welch t over independent seeds), printing the
    test, the difference A - B with its 95% interval and the p-value; a winner only when p < 0.05.
    """
    from archlab.analysis import compare
    from archlab.runs.compare_runs import compare_runs, is_run_or_group

    if len(targets) == 2 and all(is_run_or_group(t) for t in targets):
        if output is not None or input_shape is not None:
            raise ConfigError("comparing two runs or groups prints a table; --output / --input-shape do not apply")
        rc = compare_runs(targets[0], targets[1], metric=metric, test=test)
        if fmt in ("md", "json"):
            console.print(render(rc, fmt), markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(render(rc, "rich"))
        return
    if metric is not None or test != "auto":
        raise ConfigError("--metric / --test apply when comparing two runs or groups")
    if output is not None and output.suffix.lower() not in _CHART_EXTENSIONS:
        raise ConfigError(
            f"unknown chart format {output.suffix or '(no extension)'!r}; use one of {', '.join(_CHART_EXTENSIONS)}"
        )
    c = compare(targets, input_shape=_shape(input_shape))
    if fmt == "md":
        console.print(render(c, "md"), markup=False, highlight=False)
    else:
        console.print(render(c, "rich"))
    if output is not None:
        render(c, out=output)
        console.print(f"wrote {output}")
