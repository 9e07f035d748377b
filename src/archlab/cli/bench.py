"""``archlab bench``, ``archlab export`` and ``archlab deploy`` (added by :func:`register`), and
:func:`predict_export` for ``archlab predict EXPORT_DIR INPUT``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from archlab.cli.app import parse_overrides
from archlab.errors import ConfigError

_FORMATS = ("table", "md", "json")


def _console() -> Console:
    from archlab.cli.app import console

    return console


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers like 1,8,64; got {text!r}") from None


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _emit(obj, fmt: str, output: Optional[Path], md, rich_table) -> None:
    console = _console()
    if fmt not in _FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(_FORMATS)}; got {fmt!r}")
    if fmt == "table" and output is None:
        console.print(rich_table(obj))
        return
    text = json.dumps(obj.to_dict(), indent=2) if fmt == "json" else md(obj)
    if output is not None:
        from archlab.io import atomic_write_text

        atomic_write_text(output, text)
        console.print(f"wrote {output}")
    else:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def bench_cmd(
    target: str = typer.Argument(..., help="A registered model name or a run directory."),
    batch: str = typer.Option("1,8,64", "--batch", "-b", help="Batch sizes, comma-separated."),
    backend: str = typer.Option("eager", "--backend", help="eager, compile, export, onnxruntime, onnxruntime-int8."),
    mode: str = typer.Option("infer", "--mode", help="infer and/or train (one AdamW step)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads (default: all cores)."),
    min_time: float = typer.Option(1.0, "--min-time", help="Seconds measured per configuration."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32, bf16 or fp16 (default: the model's)."),
    no_isolate: bool = typer.Option(False, "--no-isolate", help="Measure in this process (faster, rougher RAM)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Config override key=value (registry names)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """Latency, throughput, memory and MFU per backend x batch x mode, checked against eager."""
    from rich.progress import Progress

    from archlab.bench import benchmark
    from archlab.report.bench import bench_markdown, bench_rich

    with Progress(console=_console(), transient=True) as bar:
        task = bar.add_task(f"bench {target}", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=f"bench {target}: {label}")

        result = benchmark(
            target,
            batch_sizes=_ints(batch, "--batch"),
            backends=_words(backend),
            modes=_words(mode),
            threads=threads,
            min_time_s=min_time,
            dtype=dtype,
            isolate=not no_isolate,
            overrides=parse_overrides(set_) or None,
            progress=progress,
        )
    _emit(result, fmt, output, bench_markdown, bench_rich)


def export_cmd(
    target: str = typer.Argument(..., help="A run directory or a registered model name."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or pt2."),
    int8: bool = typer.Option(False, "--int8", help="Also write a dynamic-int8 ONNX model."),
    output: Path = typer.Option(..., "--output", "-o", help="The export folder to write."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Config override key=value (registry names)."),
) -> None:
    """Export to ONNX or .pt2 with preprocessing.json and a README, verified against eager."""
    from archlab.deploy import export

    r = export(target, fmt, output, int8=int8, overrides=parse_overrides(set_) or None)
    console = _console()
    worst = max((v.max_abs_diff for v in r.verification if v.artifact != "int8"), default=0.0)
    console.print(f"wrote {r.out_dir}: {', '.join(r.files)}")
    console.print(
        f"{r.model_file}: {r.size_bytes / 1e6:.2f} MB, verified against eager at batch "
        f"{sorted({v.batch_size for v in r.verification})} (max abs diff {worst:.2e})"
    )
    if r.int8_file:
        console.print(f"{r.int8_file}: {r.int8_size_bytes / 1e6:.2f} MB ({r.int8_size_bytes / r.size_bytes:.2f}x)")
    if r.int8_metric:
        m = r.int8_metric
        console.print(f"int8 {m['metric']}: {m['int8']:.4f} vs fp32 {m['fp32']:.4f} (delta {m['delta']:+.4f})")


def deploy_cmd(
    target: str = typer.Argument(..., help="A run directory or a registered model name."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Budget: p99 latency at batch 1."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="Budget: RAM to serve at batch 1."),
    size_mb: Optional[float] = typer.Option(None, "--size-mb", help="Budget: model file size."),
    batch: int = typer.Option(32, "--batch", "-b", help="Batch size for throughput and RAM."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads (default: all cores)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file."),
    serve: bool = typer.Option(
        False, "--serve", help="Also serve the export over HTTP on loopback and load it (concurrency 1, 8, 32)."
    ),
    serve_requests: int = typer.Option(200, "--serve-requests", help="With --serve: requests per concurrency."),
) -> None:
    """Deployment requirements (size, RAM, latency, packages, signature) and budget checks."""
    from archlab.deploy import deploy_report
    from archlab.report.deploy import deploy_markdown, deploy_rich

    report = deploy_report(
        target,
        latency_ms=latency_ms,
        memory_mb=memory_mb,
        size_mb=size_mb,
        batch_size=batch,
        threads=threads,
        serve=serve,
        serve_requests=serve_requests,
    )
    _emit(report, fmt, output, deploy_markdown, deploy_rich)
    if not report.passed:
        raise typer.Exit(1)


def predict_export(
    export_dir: Path, input_path: Path, output: Optional[Path] = None, *, int8: bool = False, normalize: bool = False
):
    """``archlab predict EXPORT_DIR INPUT``: run an ONNX export folder (onnxruntime + numpy)."""
    from archlab.deploy.serve import predict_file

    if not (Path(export_dir) / "preprocessing.json").is_file():
        raise ConfigError(f"{export_dir} is not an archlab export folder (no preprocessing.json)")
    if not Path(input_path).is_file():
        raise ConfigError(f"INPUT {input_path} does not exist (expected an .npy or .npz file)")
    return predict_file(export_dir, input_path, output, int8=int8, normalize=normalize)


def register(app: typer.Typer) -> None:
    """Add ``bench``, ``export`` and ``deploy`` to the ``archlab`` app."""
    app.command("bench")(bench_cmd)
    app.command("export")(export_cmd)
    app.command("deploy")(deploy_cmd)
