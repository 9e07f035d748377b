"""The HTTP server of an export folder, run for real: a subprocess on a free loopback port (the
folder's own server.py with torch made unimportable), driven by an httpx client. Batching answers
each caller its own result; bad requests get a one-line 4xx without disturbing the batch they
would have joined; a full queue answers 503; a model failure answers 500 to its batch only; SIGTERM
answers the requests in flight before the process exits."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytest.importorskip("onnxruntime")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess started from an export folder's server.py, where torch cannot import."""

    def __init__(self, folder: Path, *args: str, cli: bool = False):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = (
            "import runpy, sys; sys.modules['torch'] = None\n"  # the folder must serve without torch
            f"sys.path.insert(0, {str(folder)!r})\n"
            f"sys.argv = ['server.py', '--port', '{self.port}', *{list(args)!r}]\n"
            f"runpy.run_path({str(folder / 'server.py')!r}, run_name='__main__')\n"
        )
        cmd = [sys.executable, "-c", code]
        if cli:  # `archlab serve EXPORT_DIR` instead of the folder's own script
            cmd = [sys.executable, "-m", "archlab", "serve", str(folder), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("server did not answer /health within 60 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory):
    """cnn_digits exported, with the preprocessing a digits run records (pixels / 16, train-split
    statistics) and class names, so the server applies the steps to raw pixels."""
    import torch

    from archlab.data import load
    from archlab.data.preprocess import Preprocessing
    from archlab.deploy import export

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("digits-export")
    export("cnn_digits", "onnx", out)
    pre = json.loads((out / "preprocessing.json").read_text())
    recorded = Preprocessing.from_bundle(load("digits", seed=0))
    pre["preprocessing"], pre["steps"] = recorded.to_json(), recorded.describe()
    pre["class_names"] = [f"digit {i}" for i in range(10)]
    (out / "preprocessing.json").write_text(json.dumps(pre))
    return out


@pytest.fixture(scope="module")
def raw_digits():
    from sklearn.datasets import load_digits

    return load_digits().images[:16].astype(np.float32)  # (16, 8, 8) pixel values 0..16


@pytest.fixture(scope="module")
def server(digits_export):
    s = Server(digits_export, "--max-batch", "8", "--max-wait-ms", "150", "--max-body-mb", "0.05")
    yield s
    s.stop()


def _reference(folder: Path, raw: np.ndarray) -> np.ndarray:
    """The export run one sample at a time in this process, with serve.py's own preprocessing."""
    sys.path.insert(0, str(folder))
    try:
        import serve

        p = serve.load(folder)
        return np.concatenate([p.predict(raw[i : i + 1], normalize=True)[0] for i in range(len(raw))])
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("serve", None)


async def _post_all(url: str, bodies: list, **kwargs) -> list:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*[client.post("/predict", **body, **kwargs) for body in bodies])


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def test_health_and_metadata(server, digits_export):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    meta = httpx.get(server.url + "/metadata").json()
    assert meta["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert meta["class_names"][3] == "digit 3"
    assert meta["preprocessing"]["applied"] and any("16" in s for s in meta["preprocessing"]["steps"])
    assert meta["versions"]["onnxruntime"] and meta["server"]["max_batch"] == 8
    assert meta["server"]["host"] == "127.0.0.1"


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_answer(server, digits_export, raw_digits):
    ref = _reference(digits_export, raw_digits[:8])
    assert len({int(r.argmax()) for r in ref}) > 1 or not np.allclose(ref[0], ref[1])  # distinguishable
    calls_before = _metric(server.url, "archlab_batch_size_count")
    answers = asyncio.run(_post_all(server.url, [{"json": [x.tolist()]} for x in raw_digits[:8]]))
    calls = _metric(server.url, "archlab_batch_size_count") - calls_before
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert calls < 8  # some requests shared a model call
    for i, a in enumerate(answers):
        got = np.asarray(a.json()["outputs"]["output"])
        np.testing.assert_allclose(got, ref[i : i + 1], rtol=1e-5, atol=1e-5)
        assert a.json()["labels"] == [f"digit {int(ref[i].argmax())}"]
    single = httpx.post(server.url + "/predict", json={"inputs": [raw_digits[3].tolist()]}).json()
    np.testing.assert_allclose(single["outputs"]["output"], ref[3:4], rtol=1e-5, atol=1e-5)


def test_npy_bodies_match_json(server, raw_digits):
    buf = io.BytesIO()
    np.save(buf, raw_digits[:3], allow_pickle=False)
    npy = httpx.post(server.url + "/predict", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    as_json = httpx.post(server.url + "/predict", json=raw_digits[:3].tolist())
    assert npy.status_code == 200 and len(npy.json()["labels"]) == 3
    np.testing.assert_allclose(npy.json()["outputs"]["output"], as_json.json()["outputs"]["output"], atol=1e-6)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = httpx.post(server.url + "/predict", content=pickled.getvalue(), headers={"content-type": "application/x-npy"})
    assert bad.status_code == 400 and "npy" in bad.json()["error"]


def test_bad_requests_get_one_line_4xx_and_leave_their_batch_alone(server, digits_export, raw_digits):
    nan = raw_digits[0].copy()
    nan[2, 2] = np.nan
    bad = [
        ({"content": b"[[1, 2", "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
        ({"json": [[[1.0] * 7] * 8]}, 400, "expected"),  # 8x7 pixels
        ({"json": [[["a"] * 8] * 8]}, 400, "expected float32"),
        ({"content": json.dumps([nan.tolist()]), "headers": {}}, 400, "finite"),
        ({"json": {"images": []}}, 400, "inputs"),
        ({"json": [[[1.0] * 8] * 8] * 200}, 413, "limit"),  # ~60 KB > 0.05 MB
    ]
    good = [{"json": [x.tolist()]} for x in raw_digits[8:12]]
    answers = asyncio.run(_post_all(server.url, [b for b, _, _ in bad] + good))
    for (_, status, words), a in zip(bad, answers):
        assert a.status_code == status, a.text
        err = a.json()["error"]
        assert words in err and "\n" not in err
    ref = _reference(digits_export, raw_digits[8:12])
    for i, a in enumerate(answers[len(bad) :]):
        assert a.status_code == 200
        np.testing.assert_allclose(a.json()["outputs"]["output"], ref[i : i + 1], rtol=1e-5, atol=1e-5)
    assert _metric(server.url, "archlab_request_errors_total") >= len(bad)


def test_full_queue_answers_503_with_retry_after(digits_export, raw_digits):
    # Requests wait up to a second for a batch of 64, so the queue of 4 fills first.
    s = Server(digits_export, "--max-batch", "64", "--max-wait-ms", "1000", "--queue", "4")
    try:
        answers = asyncio.run(_post_all(s.url, [{"json": [raw_digits[i % 16].tolist()]} for i in range(12)]))
        codes = [a.status_code for a in answers]
        assert codes.count(200) == 4 and codes.count(503) == 8, codes
        assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 503)
        assert "queue full" in next(a for a in answers if a.status_code == 503).json()["error"]
        again = httpx.post(s.url + "/predict", json=[raw_digits[0].tolist()], timeout=30)
        assert again.status_code == 200  # the server serves on once the queue drains
    finally:
        s.stop()


@pytest.fixture(scope="module")
def fragile_export(tmp_path_factory):
    """A hand-built ONNX classifier that fails inside ONNX Runtime when a sample's first feature is
    not a valid row index (Gather out of bounds): a real model error reached only at run time."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = tmp_path_factory.mktemp("fragile-export")
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    table = numpy_helper.from_array(np.eye(4, 3, dtype=np.float32), "table")
    starts, ends, axes = (
        numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s"), (1, "e"), (1, "a"))
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Slice", ["x", "s", "e", "a"], ["first"]),  # (B, 1)
        helper.make_node("Cast", ["first"], ["idx2"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["idx2", "a"], ["idx"]),  # (B,)
        helper.make_node("Gather", ["table", "idx"], ["rows"], axis=0),  # (B, 3)
        helper.make_node("Add", ["xw", "rows"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fragile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [w, table, starts, ends, axes],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out / "model.onnx")
    spec = {"name": "x", "dtype": "float32", "shape": ["batch", 4], "layout": "B F (batch, features)"}
    pre = {"schema_version": 2, "model": "fragile", "inputs": [spec], "steps": [], "class_names": ["a", "b", "c"]}
    (out / "preprocessing.json").write_text(json.dumps(pre))
    for name in ("serve.py", "server.py"):
        (out / name).write_bytes((Path(__file__).parents[1] / "src/archlab/deploy" / name).read_bytes())
    return out


def test_a_model_error_fails_its_batch_only_and_the_server_serves_on(fragile_export):
    s = Server(fragile_export, "--max-batch", "8", "--max-wait-ms", "300")
    try:
        good = [{"json": [[float(i % 4), 1.0, 2.0, 3.0]]} for i in range(3)]
        poison = {"json": [[100.0, 0.0, 0.0, 0.0]]}
        answers = asyncio.run(_post_all(s.url, [poison, *good]))
        assert answers[0].status_code == 500
        assert "model error" in answers[0].json()["error"] and "\n" not in answers[0].json()["error"]
        # The batcher waits for company only while other requests are being received, so how the
        # four group depends on the machine's load: those batched with the poison fail with it
        # (one failed model call), any batched after it are answered.
        for a in answers[1:]:
            assert a.status_code in (200, 500)
            assert a.status_code == 200 or "model error" in a.json()["error"]
        failed = sum(a.status_code == 500 for a in answers)
        assert _metric(s.url, 'archlab_request_errors_total{reason="model"}') == failed
        after = asyncio.run(_post_all(s.url, good))
        assert [a.status_code for a in after] == [200] * 3
        x = np.array([[2.0, 1.0, 2.0, 3.0]], np.float32)
        want = x @ (np.arange(12, dtype=np.float32).reshape(4, 3) / 10) + np.eye(4, 3, dtype=np.float32)[2]
        np.testing.assert_allclose(after[2].json()["outputs"]["logits"], want, rtol=1e-6)
        assert s.proc.poll() is None and _metric(s.url, 'archlab_request_errors_total{reason="model"}') == failed
    finally:
        s.stop()


def test_sigterm_answers_requests_in_flight_before_exit(digits_export, raw_digits):
    s = Server(digits_export, "--max-batch", "64", "--max-wait-ms", "800")

    async def scenario() -> list:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
            pending = [asyncio.ensure_future(client.post("/predict", json=[x.tolist()])) for x in raw_digits[:5]]
            await asyncio.sleep(0.3)  # the requests wait in the batcher for the 800 ms window
            s.proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*pending)

    try:
        answers = asyncio.run(scenario())
        assert [a.status_code for a in answers] == [200] * 5
        # uvicorn re-raises the signal it caught once it has shut down, so the exit is SIGTERM's
        assert s.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        s.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(s.url + "/health", timeout=2)


def test_load_test_counts_every_request_and_its_status(server, raw_digits):
    from archlab.deploy.loadtest import load_test

    r = load_test(server.url, json.dumps([raw_digits[0].tolist()]).encode(), requests=24, concurrency=6)
    assert (r.ok, r.failed, r.errors) == (24, 0, {})
    assert 0 < r.p50_ms <= r.p99_ms and r.requests_per_s > 0
    bad = load_test(server.url, b"[1,", requests=5, concurrency=2)
    assert (bad.ok, bad.errors) == (0, {"400": 5})


def test_deploy_report_serves_the_export_and_checks_the_budget_on_served_p99(tmp_path, monkeypatch):
    from archlab.deploy import deploy_report
    from archlab.report.deploy import deploy_markdown

    monkeypatch.setenv("ARCHLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("archlab.bench.roofline.SIZES", (128,))
    r = deploy_report(
        "mlp_784_128_10",
        latency_ms=1e5,
        batch_size=2,
        backends=("onnxruntime",),
        isolate=False,
        min_time_s=0.01,
        memory_budget_mb=32,
        serve=True,
        serve_requests=6,
        serve_concurrency=(1, 3),
    )
    assert [s["concurrency"] for s in r.served] == [1, 3]
    assert all(s["ok"] == 6 and s["p99_ms"] > 0 for s in r.served)
    served = {b.name: b for b in r.budgets if "served" in b.name}
    assert set(served) == {"latency_ms (served, concurrency 1)", "latency_ms (served, concurrency 3)"}
    assert all(b.passed and b.measured == s["p99_ms"] for b, s in zip(served.values(), r.served))
    md = deploy_markdown(r)
    assert "## Served over HTTP" in md and "| concurrency 3 |" in md


def test_archlab_serve_command(digits_export, raw_digits, tmp_path, capsys):
    from archlab.cli.main import main

    assert main(["serve", str(tmp_path)]) == 2
    assert "not an ONNX export folder" in capsys.readouterr().err
    assert main(["serve", str(digits_export), "--max-batch", "0"]) == 2
    assert "max_batch must be >= 1" in capsys.readouterr().err
    s = Server(digits_export, "--max-batch", "4", cli=True)
    try:
        r = httpx.post(s.url + "/predict", json=[raw_digits[5].tolist()], timeout=30)
        assert r.status_code == 200 and r.json()["labels"][0].startswith("digit ")
        assert httpx.get(s.url + "/metadata").json()["server"]["max_batch"] == 4
    finally:
        s.stop()
