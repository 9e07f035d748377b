"""Runs mirrored to a real MLflow tracking server (SQLite backend, artifacts served by it, on a
free loopback port) and to TensorBoard: an interrupted run resumed continues the same MLflow run,
every metric of metrics.jsonl is there once at its step, and the artifacts are uploaded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from archlab.errors import ConfigError
from archlab.rundir import RunDir
from archlab.runs import tracking
from archlab.runs.training import fit, resume
from archlab.train.progress import Reporter
from test_train_support import digits_bundle

TRAIN = dict(max_steps=30, batch_size=32, lr=3e-3, log_every=5, eval_every=10, checkpoint_every=10, seed=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1; stopped (and waited for) when the module's tests end."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")]
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (root / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class StopAt(Reporter):
    """Interrupts training when the record of ``step`` arrives (as Ctrl-C would)."""

    def __init__(self, step: int):
        self.step = step

    def record(self, rec):
        if rec.get("kind") == "train" and rec["step"] == self.step:
            raise KeyboardInterrupt


def _model():
    import archlab

    return archlab.create("mlp_tabular", in_features=64, out_features=10, hidden_sizes=[16])


def test_interrupted_run_resumes_the_same_mlflow_run(server, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    data = digits_bundle()
    with pytest.raises(KeyboardInterrupt):
        # stopped at step 25: metrics.jsonl and MLflow hold steps up to 20, the checkpoint is at 20
        fit(_model(), data, out_dir=tmp_path, run_name="r", track=f"mlflow:{server}", reporter=StopAt(25), **TRAIN)
    run_dir = tmp_path / "r"
    link = json.loads((run_dir / tracking.MLFLOW_FILE).read_text())
    client = MlflowClient(tracking_uri=server)
    assert client.get_run(link["run_id"]).info.status == "KILLED"
    # the environment alone turns tracking on; the run's mlflow.json picks the same run
    monkeypatch.setenv(tracking.ENV_URI, server)
    resume(run_dir, data=data)

    assert json.loads((run_dir / tracking.MLFLOW_FILE).read_text())["run_id"] == link["run_id"]
    run = client.get_run(link["run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    # every point of metrics.jsonl, once, at its step
    want: dict[str, list[int]] = {}
    for rec in RunDir(run_dir).read_metrics():
        for key in tracking.metric_points(rec):
            want.setdefault(key, []).append(int(rec["step"]))
    assert set(run.data.metrics) == set(want)
    for key, steps in want.items():
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == sorted(steps), key
    assert want["train/loss"] == [5, 10, 15, 20, 25, 30]
    assert run.data.params["train.lr"] == "0.003"
    assert run.data.params["model.name"] == "mlp_tabular"
    assert run.data.tags["archlab.family"] == "mlp"
    assert run.data.tags["archlab.dataset"] == "digits"
    assert run.data.tags["archlab.version"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.jsonl", "final_metrics.json", "model", "curves.png"} <= top
    model_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model.safetensors" in model_files


def test_track_values_are_checked(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    assert tracking.resolve_track(None) is None
    assert tracking.resolve_track("none") is None
    assert tracking.resolve_track("mlflow:http://127.0.0.1:1").uri == "http://127.0.0.1:1"
    monkeypatch.setenv(tracking.ENV_URI, "sqlite:///x.db")
    assert tracking.resolve_track(None).uri == "sqlite:///x.db"
    assert tracking.resolve_track("mlflow").uri == "sqlite:///x.db"
    assert tracking.resolve_track("off") is None
    with pytest.raises(ConfigError, match="'mlflow', 'mlflow:URI' or 'none'; got 'wandb'"):
        tracking.resolve_track("wandb")
    (tmp_path / tracking.MLFLOW_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="string 'run_id'"):
        tracking.read_run_link(tmp_path)


def test_design_parent_and_child_runs(server, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    parent = tracking.open_parent_run(f"mlflow:{server}", "design digits", params={"budget": {"latency_ms": 2}})
    assert parent is not None
    fit(_model(), digits_bundle(), out_dir=tmp_path, run_name="trial", track=parent.child(), **TRAIN)
    tracking.close_parent_run(parent, metrics={"best_val_accuracy": 0.5})
    client = MlflowClient(tracking_uri=server)
    child_id = json.loads((tmp_path / "trial" / tracking.MLFLOW_FILE).read_text())["run_id"]
    assert client.get_run(child_id).data.tags["mlflow.parentRunId"] == parent.run_id
    got = client.get_run(parent.run_id)
    assert got.data.params["budget.latency_ms"] == "2"
    assert got.data.metrics["best_val_accuracy"] == 0.5
    assert got.info.status == "FINISHED"


def test_tensorboard_gets_scalars_images_and_the_data_block(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from archlab.train.progress import Reporters

    data = digits_bundle()
    fit(_model(), data, out_dir=tmp_path, run_name="tb", tensorboard=True, **TRAIN)
    run_dir = tmp_path / "tb"
    # a picture as a task reports it: the picture writer draws it, the TensorBoard writer reads it
    writers = Reporters(tracking.TensorBoardWriter(run_dir))
    (run_dir / "grid.png").write_bytes((run_dir / "curves.png").read_bytes())
    writers.start(30, 30, "tb")
    writers.record({"kind": "eval", "step": 30, "val_loss": 1.0})
    writers.picture("grid", None)
    writers.close()
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "tensors": 0}).Reload()
    scalars = acc.Tags()["scalars"]
    assert "train/loss" in scalars and "eval/val_accuracy" in scalars and "final/test_accuracy" in scalars
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20, 25, 30]
    assert acc.Images("grid")[0].step == 30
    text = acc.Tensors("data/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "- dataset: digits" in text and "- input shape: [64]" in text, text


def test_a_bad_track_value_is_one_line_and_leaves_no_run(tmp_path, capsys, monkeypatch):
    from archlab.cli.main import main

    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    argv = ["train", "--model", "mlp_tabular", "--data", "iris", "--track", "wandb", "--out-dir", str(tmp_path)]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("ConfigError:") and "'mlflow', 'mlflow:URI' or 'none'; got 'wandb'" in err
    assert len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())
