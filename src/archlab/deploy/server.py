"""An HTTP server for an archlab ONNX export, with dynamic batching (numpy, onnxruntime,
Starlette, uvicorn and prometheus-client; no torch, no archlab).

This file is copied into every ONNX export folder beside ``serve.py``, so the folder serves alone::

    pip install numpy onnxruntime starlette uvicorn prometheus-client
    python server.py [EXPORT_DIR] [--host 127.0.0.1] [--port 8000] [--max-batch 32] [--max-wait-ms 2]

or, with archlab installed, ``archlab serve EXPORT_DIR``. Endpoints:

- ``POST /predict``: a batch of raw samples (first axis = samples) as JSON (``[[...], ...]``,
  ``{"inputs": [...]}`` or ``{"inputs": {"name": [...]}}`` for several inputs) or as ``.npy``
  bytes (``Content-Type: application/x-npy``, read with ``allow_pickle=False``). The recorded
  preprocessing (preprocessing.json) is applied, the answer holds every output and, for a
  classifier, the class names: ``{"outputs": {"logits": [[...]]}, "labels": ["digit 3"]}``.
- ``GET /health``, ``GET /metadata`` (signature, preprocessing, versions, server settings),
  ``GET /metrics`` (Prometheus text: requests, errors, latency, batch sizes, queue depth).

Dynamic batching (as in Triton's dynamic batcher and TorchServe's batch_size / max_batch_delay):
requests that arrive within ``max_wait_ms`` of the oldest waiting one run as one batch of at most
``max_batch`` samples, when one of ``workers`` inference threads is free; while every worker is
busy the queue fills, and the next free worker takes up to ``max_batch`` of it at once. The
wait is skipped when no other request is being received (nothing could join the batch). Each request is parsed
and validated on its own before it joins a batch, so a bad request is answered 4xx and never
reaches, let alone disturbs, the others; a model failure answers 500 to the requests of that batch
only. A full queue answers 503 with ``Retry-After``. SIGTERM stops accepting connections and
answers the requests in flight before the process exits (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__:  # imported from archlab
    from archlab.deploy.serve import _NP_DTYPES, Predictor
else:  # run as a script from an export folder: serve.py sits beside this file
    from serve import _NP_DTYPES, Predictor

log = logging.getLogger("archlab.server")
NPY_TYPE = "application/x-npy"


@dataclass
class ServerConfig:
    """Settings of one server.

    Attributes:
        export_dir: an ONNX export folder (``archlab export``).
        host: the address to bind; loopback unless told otherwise.
        port: the TCP port.
        max_batch: most samples in one model call (1 turns batching off).
        max_wait_ms: how long the oldest waiting request may wait for others to join its batch.
        workers: inference threads, each running one batch at a time on the shared session.
        queue: most requests waiting for a worker; one more is answered 503.
        max_body_bytes: largest request body accepted (413 above).
        threads: ONNX Runtime intra-op threads (None: its default, all cores).
        int8: serve ``model.int8.onnx``.
        normalize: apply the recorded preprocessing to the raw inputs.
    """

    export_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_wait_ms: float = 2.0
    workers: int = 1
    queue: int = 256
    max_body_bytes: int = 8 * 1024 * 1024
    threads: int | None = None
    int8: bool = False
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch", "workers", "queue", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0; got {self.max_wait_ms}")


class RequestError(Exception):
    """A request answered with an HTTP error status and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


# ---------------------------------------------------------------------------------------------
# Parsing and per-request validation


def _json_arrays(body: bytes, specs: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    if isinstance(doc, dict):
        if "inputs" not in doc:
            raise RequestError(400, f"expected a JSON array or an object with 'inputs'; got keys {sorted(doc)[:5]}")
        doc = doc["inputs"]
    if isinstance(doc, dict):
        return doc
    if not isinstance(doc, list):
        raise RequestError(400, f"expected a JSON array of samples; got {type(doc).__name__}")
    return {specs[0]["name"]: doc}


def _npy_arrays(body: bytes, specs: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError or EOFError on a bad file
        raise RequestError(400, f"not a readable .npy array: {type(exc).__name__}: {exc}") from None
    if not isinstance(arr, np.ndarray):
        raise RequestError(400, "expected one .npy array; got an .npz archive")
    return {specs[0]["name"]: arr}


def _as_array(name: str, value: Any, spec: dict[str, Any]) -> np.ndarray:
    """One input as an ndarray of the spec's dtype; the dtype family must match (floats for a float
    input, integers for ids)."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise RequestError(400, f"input {name!r}: not a rectangular array ({exc})") from None
    want = np.dtype(_NP_DTYPES.get(spec["dtype"], np.float32))
    if arr.dtype.kind not in "biuf" or (want.kind in "iu" and arr.dtype.kind == "f"):
        raise RequestError(400, f"input {name!r}: expected {spec['dtype']} values; got {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise RequestError(400, f"input {name!r}: expected finite numbers; got NaN or infinity")
    return arr.astype(want, copy=False)


def _check_shape(name: str, arr: np.ndarray, spec: dict[str, Any]) -> None:
    shape = spec["shape"]
    fixed_ok = all(not isinstance(s, int) or s == got for s, got in zip(shape[1:], arr.shape[1:]))
    if arr.ndim != len(shape) or not fixed_ok or arr.shape[0] == 0:
        want = ", ".join(str(s) for s in shape)
        raise RequestError(400, f"input {name!r}: expected shape ({want}) {spec['dtype']}; got {tuple(arr.shape)}")


class Model:
    """The export's session, its input specs and the per-request preparation of inputs."""

    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.predictor = Predictor(cfg.export_dir, int8=cfg.int8, threads=cfg.threads, spin=False)
        self.dir = Path(cfg.export_dir)
        sig_path = self.dir / "signature.json"
        self.signature = json.loads(sig_path.read_text(encoding="utf-8")) if sig_path.is_file() else {}
        wanted = {i.name for i in self.predictor.session.get_inputs()}
        self.specs = [s for s in self.predictor.inputs if s["name"] in wanted]
        self.output_names = [o.name for o in self.predictor.session.get_outputs()]
        vocab = (self.signature.get("config") or {}).get("vocab_size") or len(self.predictor.pre.get("vocab") or [])
        self.vocab_size = int(vocab) if vocab else None
        self._metadata: dict[str, Any] | None = None

    def prepare(self, body: bytes, content_type: str) -> tuple[dict[str, np.ndarray], int]:
        """Parse and validate one request: its model inputs and its number of samples.

        Raises:
            RequestError: 400 for malformed bodies, wrong dtypes, shapes or non-finite values.
        """
        ctype = content_type.split(";")[0].strip().lower()
        raw = _npy_arrays(body, self.specs) if ctype == NPY_TYPE else _json_arrays(body, self.specs)
        unknown = set(raw) - {s["name"] for s in self.specs}
        if unknown:
            raise RequestError(400, f"unknown inputs {sorted(unknown)}; expected {[s['name'] for s in self.specs]}")
        feed: dict[str, np.ndarray] = {}
        for spec in self.specs:
            name = spec["name"]
            if name not in raw:
                raise RequestError(400, f"missing input {name!r}: expected {spec['dtype']} {spec['shape']}")
            arr = _as_array(name, raw[name], spec)
            if self.cfg.normalize and arr.dtype.kind == "f":
                try:
                    arr = self.predictor.normalize(arr)
                except ValueError as exc:
                    raise RequestError(400, f"input {name!r}: {exc}") from None
            _check_shape(name, arr, spec)
            if arr.dtype.kind in "iu" and self.vocab_size and (arr.min() < 0 or arr.max() >= self.vocab_size):
                raise RequestError(
                    400,
                    f"input {name!r}: expected token ids in [0, {self.vocab_size}); got {arr.min()}..{arr.max()}",
                )
            feed[name] = arr
        counts = {len(a) for a in feed.values()}
        if len(counts) != 1:
            raise RequestError(400, f"inputs disagree on the number of samples: {sorted(counts)}")
        return feed, counts.pop()

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.predictor.session.run(None, feed)

    def answer(self, outs: list[np.ndarray]) -> dict[str, Any]:
        doc: dict[str, Any] = {"outputs": {n: o.tolist() for n, o in zip(self.output_names, outs)}}
        pre = self.predictor.pre
        if (pre.get("class_names") or pre.get("task") == "classification") and outs[0].ndim == 2:
            doc["labels"] = self.predictor.labels(outs[0])
        return doc

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = self._describe()
        return self._metadata

    def _describe(self) -> dict[str, Any]:
        import onnxruntime

        versions = {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "onnxruntime": onnxruntime.__version__,
        }
        for pkg in ("starlette", "uvicorn", "prometheus_client"):
            with contextlib.suppress(Exception):
                versions[pkg] = __import__(pkg).__version__
        versions["archlab (exporter)"] = self.signature.get("archlab_version")
        versions["torch (exporter)"] = self.signature.get("torch_version")
        pre = self.predictor.pre
        return {
            "model": self.signature.get("model") or pre.get("model"),
            "model_file": "model.int8.onnx" if self.cfg.int8 else "model.onnx",
            "inputs": self.specs,
            "outputs": self.signature.get("outputs") or [{"name": n} for n in self.output_names],
            "preprocessing": {"applied": self.cfg.normalize, "steps": pre.get("steps")},
            "class_names": pre.get("class_names"),
            "versions": versions,
            "server": {k: v for k, v in asdict(self.cfg).items() if k != "export_dir"},
        }


# ---------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    """Prometheus metrics of one server, in a registry of its own."""

    def __init__(self, max_batch: int):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "archlab_requests", "HTTP requests answered", ["endpoint", "code"], registry=self.registry
        )
        self.errors = Counter(
            "archlab_request_errors", "requests answered with an error", ["reason"], registry=self.registry
        )
        self.latency = Histogram(
            "archlab_request_latency_seconds",
            "POST /predict latency, arrival to answer",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        buckets = sorted({2**i for i in range(max_batch.bit_length() + 1)} | {max_batch})
        self.batch_size = Histogram(
            "archlab_batch_size", "samples per model call", buckets=buckets, registry=self.registry
        )
        self.queue_depth = Gauge("archlab_queue_depth", "requests waiting for a worker", registry=self.registry)
        self.busy_workers = Gauge("archlab_busy_workers", "workers running a batch", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------------------------------------
# Dynamic batching


@dataclass
class _Item:
    feed: dict[str, np.ndarray]
    n: int
    key: tuple  # per-sample shapes: only requests with the same ones can share a batch
    arrived: float
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Collects validated requests into batches and runs them on worker threads.

    Args:
        run: the model call, ``feed -> outputs`` (first axis = samples), run on a worker thread.
        cfg: batching settings (max_batch, max_wait_ms, workers, queue).
        metrics: where queue depth and batch sizes go.
    """

    def __init__(self, run: Any, cfg: ServerConfig, metrics: Metrics):
        self._run_model = run
        self.max_batch, self.max_wait = cfg.max_batch, cfg.max_wait_ms / 1000
        self.queue_size, self.workers = cfg.queue, cfg.workers
        self.metrics = metrics
        self._pending: deque[_Item] = deque()
        self._tasks: set[asyncio.Task] = set()
        self._pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="archlab-infer")
        self._loop_task: asyncio.Task | None = None
        self.arriving = 0  # requests being read and validated, not yet queued

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        self._closing = False
        self._loop_task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        """Answer what is queued and running, then stop the workers."""
        self._closing = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True)

    def submit(self, feed: dict[str, np.ndarray], n: int) -> asyncio.Future:
        """Queue one request; its future gets the request's slice of the outputs.

        Raises:
            RequestError: 503 when the queue is full or the server is stopping.
        """
        if self._closing:
            raise RequestError(503, "the server is shutting down", {"Retry-After": "1"})
        if len(self._pending) >= self.queue_size:
            raise RequestError(503, f"queue full ({self.queue_size} requests waiting)", {"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        key = tuple(sorted((k, v.shape[1:]) for k, v in feed.items()))
        item = _Item(feed, n, key, loop.time(), loop.create_future())
        self._pending.append(item)
        self.metrics.queue_depth.set(len(self._pending))
        self._wake.set()
        return item.future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()  # form a batch only when a worker can run it
            while not self._pending:
                if self._closing:
                    self._slots.release()
                    return
                self._wake.clear()
                await self._wake.wait()
            first = self._pending[0]
            deadline = first.arrived + self.max_wait
            # Wait for company only while other requests are being received: with none on the way
            # the wait is pure latency (and on a busy machine a short sleep costs a time slice).
            while self.arriving and self._samples(first.key) < self.max_batch and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            task = asyncio.create_task(self._run(self._take(first.key)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _samples(self, key: tuple) -> int:
        return sum(i.n for i in self._pending if i.key == key)

    def _take(self, key: tuple) -> list[_Item]:
        """The oldest request and those of the same shapes behind it, up to max_batch samples."""
        batch, keep, total = [], deque(), 0
        while self._pending:
            item = self._pending.popleft()
            if item.key == key and (not batch or total + item.n <= self.max_batch):
                batch.append(item)
                total += item.n
            else:
                keep.append(item)
        self._pending = keep
        self.metrics.queue_depth.set(len(keep))
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        self.metrics.busy_workers.inc()
        try:
            feed = {k: np.concatenate([i.feed[k] for i in batch]) for k in batch[0].feed}
            self.metrics.batch_size.observe(sum(i.n for i in batch))
            try:
                outs = await loop.run_in_executor(self._pool, self._run_model, feed)
            except Exception as exc:  # the model failed on this batch: its requests only get a 500
                log.error("model call failed on a batch of %d requests: %s", len(batch), exc)
                msg = " ".join(f"model error: {type(exc).__name__}: {exc}".split())[:500]
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RequestError(500, msg))
                return
            start = 0
            for item in batch:
                if not item.future.done():  # the caller may have gone away
                    item.future.set_result([o[start : start + item.n] for o in outs])
                start += item.n
        finally:
            self.metrics.busy_workers.dec()
            self._slots.release()


# ---------------------------------------------------------------------------------------------
# The application


async def _read_body(request: Any, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, f"request body of {int(length)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(cfg: ServerConfig) -> Any:
    """The Starlette application serving ``cfg.export_dir`` (the model loads here, before binding)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    model = Model(cfg)
    metrics = Metrics(cfg.max_batch)
    batcher = Batcher(model.run, cfg, metrics)

    def error(exc: RequestError, endpoint: str) -> JSONResponse:
        metrics.requests.labels(endpoint, str(exc.status)).inc()
        reason = {400: "bad_request", 413: "too_large", 415: "media_type", 500: "model", 503: "overload"}
        metrics.errors.labels(reason.get(exc.status, str(exc.status))).inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    async def predict(request: Any) -> Response:
        t0 = time.perf_counter()
        batcher.arriving += 1
        try:
            try:
                body = await _read_body(request, cfg.max_body_bytes)
                feed, n = model.prepare(body, request.headers.get("content-type", "application/json"))
            finally:
                batcher.arriving -= 1
            outs = await batcher.submit(feed, n)
        except RequestError as exc:
            return error(exc, "/predict")
        metrics.latency.observe(time.perf_counter() - t0)
        metrics.requests.labels("/predict", "200").inc()
        return JSONResponse(model.answer(outs))

    async def health(request: Any) -> Response:
        metrics.requests.labels("/health", "200").inc()
        return JSONResponse({"status": "ok", "model": model.metadata()["model"]})

    async def metadata(request: Any) -> Response:
        metrics.requests.labels("/metadata", "200").inc()
        return JSONResponse(model.metadata())

    async def metrics_endpoint(request: Any) -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        await batcher.start()
        log.info("serving %s on http://%s:%d", cfg.export_dir, cfg.host, cfg.port)
        yield
        await batcher.stop()  # uvicorn has already waited for the requests in flight

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metadata", metadata, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.model, app.state.batcher, app.state.metrics = model, batcher, metrics
    return app


def run(cfg: ServerConfig) -> None:
    """Serve until SIGINT / SIGTERM; the requests in flight are answered before exit."""
    import uvicorn

    app = build_app(cfg)
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
        backlog=max(2048, cfg.queue * 2),
    )
    uvicorn.Server(config).run()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Serve an archlab ONNX export over HTTP with dynamic batching.")
    here = Path(__file__).resolve().parent
    default_dir = str(here) if (here / "preprocessing.json").is_file() else None
    ap.add_argument("export_dir", nargs="?", default=default_dir, help="the export folder (default: this file's)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-batch", type=int, default=32, help="most samples per model call (1: no batching)")
    ap.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a request waits for others")
    ap.add_argument("--workers", type=int, default=1, help="inference threads")
    ap.add_argument("--queue", type=int, default=256, help="most waiting requests before 503")
    ap.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--int8", action="store_true", help="serve model.int8.onnx")
    ap.add_argument("--no-normalize", action="store_true", help="inputs are already preprocessed")
    return ap


def config_from_args(a: argparse.Namespace) -> ServerConfig:
    if a.export_dir is None:
        raise ValueError("give the export folder (EXPORT_DIR)")
    return ServerConfig(
        export_dir=a.export_dir,
        host=a.host,
        port=a.port,
        max_batch=a.max_batch,
        max_wait_ms=a.max_wait_ms,
        workers=a.workers,
        queue=a.queue,
        max_body_bytes=int(a.max_body_mb * 1024 * 1024),
        threads=a.threads,
        int8=a.int8,
        normalize=not a.no_normalize,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ARCHLAB_LOG_LEVEL", "INFO"), format="%(message)s")
    try:
        cfg = config_from_args(parser().parse_args(argv))
        run(cfg)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
