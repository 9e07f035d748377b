"""A bounded load test of an export folder's HTTP server on loopback.

:class:`ServerProcess` starts the folder's own ``server.py`` in a subprocess (what a deployment
runs: no torch in it) on a free port and stops it with SIGTERM; :func:`load_test` sends a fixed
number of requests at a fixed concurrency with an asyncio httpx client and times each one from
the client's side (arrival to answer, queueing and batching included).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archlab.errors import ArchlabError, MissingExtraError


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingExtraError("the served load test needs httpx: pip install 'archlab[serve]'") from None
    return httpx


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python EXPORT_DIR/server.py --port P ARGS`` on loopback, up once /health answers.

    Args:
        export_dir: an ONNX export folder holding server.py.
        args: further server options (``--max-batch 8``, ...).
        start_timeout_s: how long to wait for /health.
    """

    def __init__(self, export_dir: str | Path, *args: str, start_timeout_s: float = 60.0):
        self.export_dir, self.args, self.start_timeout_s = Path(export_dir), list(args), start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        httpx = _httpx()
        script = self.export_dir / "server.py"
        if not script.is_file():
            raise ArchlabError(f"{self.export_dir} has no server.py (export it again with this archlab)")
        cmd = [sys.executable, str(script), str(self.export_dir), "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ArchlabError(f"the server exited with {self.proc.returncode}: {self.proc.stderr.read()[-500:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise ArchlabError(f"the server did not answer /health within {self.start_timeout_s:g} s")

    def stop(self) -> int | None:
        """SIGTERM (the server answers what is in flight), then wait; kill after 30 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class LoadResult:
    """One load level: ``requests`` sent by ``concurrency`` clients, as the clients saw them."""

    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int] = field(default_factory=dict)  # HTTP status (or "transport") -> count
    wall_s: float = 0.0
    requests_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    ok_p99_ms: float | None = None  # admitted (200) requests only: what overload does to them

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _load(url: str, body: bytes, headers: dict[str, str], requests: int, concurrency: int) -> LoadResult:
    httpx = _httpx()
    latencies: list[float] = []
    ok_latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: Any) -> None:
        for _ in next_index:  # the clients share one iterator: `requests` calls in all
            t0 = time.perf_counter()
            try:
                r = await client.post("/predict", content=body, headers=headers)
                code = str(r.status_code)
            except httpx.TransportError:
                code = "transport"
            dt = time.perf_counter() - t0
            latencies.append(dt)
            if code == "200":
                ok_latencies.append(dt)
            else:
                errors[code] = errors.get(code, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*[client_loop(client) for _ in range(concurrency)])
        wall = time.perf_counter() - t0

    def pct(xs: list[float], q: float) -> float | None:
        return round(float(np.percentile(xs, q)) * 1e3, 3) if xs else None

    return LoadResult(
        concurrency=concurrency,
        requests=requests,
        ok=len(ok_latencies),
        errors=errors,
        wall_s=round(wall, 3),
        requests_per_s=round(len(ok_latencies) / wall, 2) if wall > 0 else 0.0,
        p50_ms=pct(latencies, 50),
        p99_ms=pct(latencies, 99),
        ok_p99_ms=pct(ok_latencies, 99),
    )


def load_test(
    url: str, body: bytes, *, requests: int, concurrency: int, content_type: str = "application/json"
) -> LoadResult:
    """Send ``requests`` POST /predict calls of ``body`` from ``concurrency`` concurrent clients."""
    if requests < 1 or concurrency < 1:
        raise ValueError(f"requests and concurrency must be >= 1; got {requests}, {concurrency}")
    return asyncio.run(_load(url, body, {"content-type": content_type}, requests, concurrency))


def serve_and_measure(
    export_dir: str | Path,
    body: bytes,
    *,
    concurrency: tuple[int, ...] = (1, 8, 32),
    requests: int = 200,
    server_args: tuple[str, ...] = (),
    warmup: int = 20,
) -> list[LoadResult]:
    """Start the folder's server, load it at each concurrency in turn, stop it.

    Args:
        export_dir: an ONNX export folder.
        body: one JSON request body (a batch of one sample, say).
        concurrency: the load levels, each measured with ``requests`` calls.
        requests: calls per level.
        server_args: server options (``--max-batch``, ``--max-wait-ms``, ...).
        warmup: calls sent first and not counted (session warm-up, connection set-up).
    """
    with ServerProcess(export_dir, *server_args) as server:
        probe = _httpx().post(server.url + "/predict", content=body, headers={"content-type": "application/json"})
        if probe.status_code != 200:
            raise ArchlabError(f"the server answered the load test's request {probe.status_code}: {probe.text[:300]}")
        if warmup:
            load_test(server.url, body, requests=warmup, concurrency=min(4, warmup))
        return [load_test(server.url, body, requests=requests, concurrency=c) for c in concurrency]
