"""``archlab serve EXPORT_DIR``: an HTTP server with dynamic batching for an ONNX export folder
(:mod:`archlab.deploy.server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from archlab.errors import ConfigError, MissingExtraError


def serve_cmd(
    export_dir: Path = typer.Argument(..., help="An ONNX export folder (archlab export)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most samples per model call (1 turns batching off)."),
    max_wait_ms: float = typer.Option(2.0, "--max-wait-ms", help="How long a request waits for others to join."),
    workers: int = typer.Option(1, "--workers", help="Inference threads, one batch each."),
    queue: int = typer.Option(256, "--queue", help="Most waiting requests; one more is answered 503."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", help="Largest request body (413 above)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime intra-op threads."),
    int8: bool = typer.Option(False, "--int8", help="Serve model.int8.onnx."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Inputs are already preprocessed."),
) -> None:
    """Serve an export over HTTP: POST /predict, GET /health, /metadata, /metrics (Prometheus)."""
    if not (export_dir / "preprocessing.json").is_file() or not (export_dir / "model.onnx").is_file():
        raise ConfigError(f"{export_dir} is not an ONNX export folder (expected model.onnx and preprocessing.json)")
    if int8 and not (export_dir / "model.int8.onnx").is_file():
        raise ConfigError(f"--int8: {export_dir} has no model.int8.onnx (export with --int8)")
    try:
        from archlab.deploy import server
    except ImportError as exc:
        raise MissingExtraError(
            f"archlab serve needs starlette, uvicorn and prometheus-client: pip install 'archlab[serve]' ({exc})"
        ) from None
    try:
        cfg = server.ServerConfig(
            export_dir=str(export_dir),
            host=host,
            port=port,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            workers=workers,
            queue=queue,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            threads=threads,
            int8=int8,
            normalize=not no_normalize,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    server.run(cfg)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``archlab`` app."""
    app.command("serve")(serve_cmd)
