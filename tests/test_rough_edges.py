"""Rough edges of the run commands: options that left ``train`` say where they went (CLI, run file,
archlab.fit); resuming a finished run changes no file; a fallback checkpoint is named by every
result and refused by ``--strict``; report figures share one unit and say "not measured (why)";
``archlab predict EXPORT_DIR`` answers where torch cannot be imported."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import archlab
from archlab.cli.main import main
from archlab.errors import CheckpointError
from archlab.runs import training
from archlab.runs.spec import MOVED_TRAIN_KEYS, RunSpec

TRAIN = ["--model", "mlp_tabular", "--data", "iris", "--quiet", "--set", "max_steps=3", "--set", "precision=fp32"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *TRAIN, "--out-dir", str(out), "--name", "r"]) == 0
    return out / "r"


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def _digests(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the tensor data, past the header
    path.write_bytes(bytes(data))


def _final_name(run: Path) -> str:
    return json.loads((run / "final_metrics.json").read_text())["weights"]


# -- options that left train ------------------------------------------------------------------

# a value per moved option, and what the run options must hold afterwards (quiet: nothing)
_VALUES = {"tensorboard": True, "out_dir": "OUT", "run_name": "named", "quiet": True}


def _recording_fit(monkeypatch, finished_run, tmp_path):
    """archlab.runs.fit replaced by a stub that binds the real signature (a duplicate keyword
    fails as it would) and answers with the finished run; returns the recorded call."""
    calls = []
    signature = inspect.signature(training.fit)

    def stub(*args, **kwargs):
        calls.append(signature.bind(*args, **kwargs).arguments)
        return training.resume(_copy(finished_run, tmp_path, f"answer{len(calls)}"))

    monkeypatch.setattr("archlab.runs.fit", stub)
    return calls


def _check_routed(key: str, call: dict, caplog, where: str, tmp_path: Path) -> None:
    moved = MOVED_TRAIN_KEYS[key]
    said = [r.getMessage() for r in caplog.records if "is not a training setting" in r.getMessage()]
    assert len(said) == 1 and where in said[0] and moved.flag in said[0], said
    train = call.get("train_config", {})
    assert key not in train
    value = {"out_dir": str(tmp_path / "OUT")}.get(key, _VALUES[key])
    if key == "quiet":
        assert "ignored" in said[0]
    else:
        assert f"run.{moved.run_key}" in said[0]
        assert call[key] == value


@pytest.mark.parametrize("key", list(MOVED_TRAIN_KEYS))
def test_cli_set_of_a_moved_option_names_its_place(key, finished_run, tmp_path, monkeypatch, caplog):
    calls = _recording_fit(monkeypatch, finished_run, tmp_path)
    value = {"out_dir": str(tmp_path / "OUT")}.get(key, _VALUES[key])
    with caplog.at_level(logging.WARNING, logger="archlab"):
        assert main(["train", *TRAIN, "--set", f"train.{key}={json.dumps(value)}"]) == 0
    _check_routed(key, calls[0], caplog, f"--set train.{key}", tmp_path)


@pytest.mark.parametrize("key", list(MOVED_TRAIN_KEYS))
def test_run_file_with_a_moved_option_names_its_place(key, finished_run, tmp_path, monkeypatch, caplog):
    calls = _recording_fit(monkeypatch, finished_run, tmp_path)
    value = {"out_dir": str(tmp_path / "OUT")}.get(key, _VALUES[key])
    spec = {"model": "mlp_tabular", "data": "iris", "train": {"max_steps": 3, key: value}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(spec))
    with caplog.at_level(logging.WARNING, logger="archlab"):
        assert main(["train", str(tmp_path / "run.yaml"), "--quiet"]) == 0
    _check_routed(key, calls[0], caplog, f"{tmp_path / 'run.yaml'}: train.{key}", tmp_path)


def test_set_run_fields_and_a_bad_one():
    spec = RunSpec().with_sets(["run.tensorboard=true", "run.name=x", "lr=0.1"])
    assert spec.run.tensorboard is True and spec.run.name == "x" and spec.train == {"lr": 0.1}
    with pytest.raises(archlab.ConfigError, match=r"--set run\.bogus: .*run fields: out_dir, name, tensorboard"):
        RunSpec().with_sets(["run.bogus=1"])


def test_cli_set_train_tensorboard_false_trains(tmp_path, caplog):
    """The command that crashed with "got multiple values for keyword argument 'tensorboard'"."""
    with caplog.at_level(logging.WARNING, logger="archlab"):
        code = main(["train", *TRAIN, "--out-dir", str(tmp_path), "--name", "tb", "--set", "train.tensorboard=false"])
    assert code == 0 and (tmp_path / "tb" / "final_metrics.json").is_file()
    assert not (tmp_path / "tb" / "tb").exists()  # no TensorBoard logs were asked for
    assert any("--tensorboard" in r.getMessage() for r in caplog.records)


def test_archlab_fit_takes_every_moved_option(tmp_path, caplog):
    """quiet is accepted and ignored with a warning naming its place; out_dir, run_name and
    tensorboard are archlab.fit's own keywords."""
    with caplog.at_level(logging.WARNING, logger="archlab"):
        result = archlab.fit(
            "mlp_tabular",
            "iris",
            max_steps=1,
            precision="fp32",
            quiet=True,
            tensorboard=False,
            out_dir=tmp_path / "OUT",
            run_name="named",
        )
    assert Path(result.run_dir) == tmp_path / "OUT" / "named"
    assert not (Path(result.run_dir) / "tb").exists()
    said = [r.getMessage() for r in caplog.records if "is not a training setting" in r.getMessage()]
    assert said == [MOVED_TRAIN_KEYS["quiet"].say("archlab.fit(quiet=...)")]
    assert "-q/--quiet" in said[0]


# -- resuming a finished run ------------------------------------------------------------------


def test_cli_resume_of_a_finished_run_changes_no_file(finished_run, tmp_path, caplog):
    run = _copy(finished_run, tmp_path)
    before = _digests(run)
    with caplog.at_level(logging.WARNING, logger="archlab"):
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert _digests(run) == before
    assert sum("is finished (step 3): nothing to resume" in r.getMessage() for r in caplog.records) == 2


def test_python_resume_of_a_finished_run_returns_it_unchanged(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    before = _digests(run)
    result = archlab.resume(run)
    assert _digests(run) == before
    assert result.metrics == json.loads((run / "final_metrics.json").read_text())
    assert result.steps == 3 and [r for r in result.history if r.get("kind") == "final"] == [
        {"kind": "final", **result.metrics}
    ]
    _, model, _, _ = archlab.runs.load_run(run)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), result.model.state_dict().values()))


def test_a_run_whose_last_checkpoint_is_lost_is_not_finished(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    assert training.finished(run) is not None
    _flip(run / "last" / "model.safetensors")  # last.prev (an earlier step) answers: steps are left
    assert training.finished(run) is None


# -- a fallback checkpoint --------------------------------------------------------------------


@pytest.fixture
def corrupt_run(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path, "corrupt")
    _flip(run / _final_name(run) / "model.safetensors")
    return run


def test_intact_run_answers_with_its_final_checkpoint(finished_run):
    result = archlab.evaluate(finished_run, splits=["test"])
    assert not result.weights.is_fallback and result.weights.name == _final_name(finished_run)
    assert result.to_dict()["weights"]["fallback"] is False
    assert result["test_accuracy"] == pytest.approx(
        json.loads((finished_run / "final_metrics.json").read_text())["test_accuracy"]
    )


def test_evaluate_predict_load_run_name_the_fallback(corrupt_run):
    final = _final_name(corrupt_run)
    evaluation = archlab.evaluate(corrupt_run, splits=["test"])
    assert evaluation.weights.is_fallback and evaluation.weights.wanted == final
    assert evaluation.weights.name != final and "failed its integrity check" in evaluation.weights.fallback_reason
    assert evaluation.to_dict()["weights"]["checkpoint"] == evaluation.weights.name
    predictions = archlab.runs.use.predict_run(corrupt_run, "test")
    assert predictions.weights == evaluation.weights and len(predictions.values) == 30
    loaded = archlab.runs.load_run(corrupt_run)
    assert loaded.weights == evaluation.weights and loaded.checkpoint == evaluation.weights.path


@pytest.mark.parametrize("call", ["evaluate", "predict", "load_run"])
def test_strict_refuses_the_fallback(corrupt_run, call):
    fn = {"evaluate": archlab.evaluate, "predict": archlab.predict, "load_run": archlab.runs.load_run}[call]
    args = (corrupt_run, "test") if call == "predict" else (corrupt_run,)
    with pytest.raises(CheckpointError, match=r"final checkpoint \w+/ cannot be used .*failed its integrity check"):
        fn(*args, strict=True)


@pytest.mark.parametrize("command", [["evaluate", "--split", "test"], ["predict", "test"], ["summary"]])
def test_cli_first_line_names_the_fallback(corrupt_run, command, capsys):
    args = [command[0], str(corrupt_run), *command[1:]]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("FALLBACK weights: ") and "not the run's final model" in first
    if command[0] != "summary":
        assert main([*args, "--strict"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("CheckpointError: ") and "--strict" in err[-1]


def test_cli_first_line_names_the_final_weights(finished_run, capsys):
    assert main(["evaluate", str(finished_run), "--split", "test", "--strict"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"weights: {_final_name(finished_run)}/ (step 3), the run's final model"


def test_report_of_a_run_names_the_checkpoint(corrupt_run, finished_run):
    from archlab.report.document import build_report

    rep = build_report(corrupt_run, bench=False, deploy=False, advisor=False)
    assert any(n.startswith("FALLBACK weights: ") for n in rep.notes)
    rep = build_report(finished_run, bench=False, deploy=False, advisor=False)
    assert not any("weights" in n for n in rep.notes)  # the final metrics say which: best or last


# -- report figures ---------------------------------------------------------------------------


def _rows():
    from archlab.bench.result import BenchRow

    def row(backend, batch, per_s, peak, method):
        return BenchRow(
            backend=backend,
            mode="infer",
            batch_size=batch,
            dtype="fp32",
            threads=1,
            p50_ms=1.5,
            p90_ms=2.0,
            p99_ms=12.25,
            samples_per_s=per_s,
            peak_mem_mb=peak,
            mem_method=method,
        )

    return [
        row("eager", 1, 960.0, 0.0, "RSS growth (VmHWM)"),
        row("eager", 32, 108_800.0, 3.0, "RSS growth (VmHWM)"),
        row("onnxruntime", 32, 84_170.0, 41.5, "RSS growth (VmHWM), fresh process: session + run"),
    ]


def test_ram_to_serve_is_measured_only_in_a_fresh_process():
    from archlab.deploy.requirements import ram_to_serve

    in_process, none_grew, fresh = _rows()[1], _rows()[0], _rows()[2]
    assert ram_to_serve(fresh) == (41.5, None)
    for row in (in_process, none_grew):
        mb, why = ram_to_serve(row)
        assert mb is None and "lower bound" in why and "isolate=True" in why


def test_deploy_report_figures_share_one_format_and_say_not_measured():
    from archlab.deploy.requirements import DeployReport, ram_to_serve
    from archlab.report.deploy import deploy_markdown

    rows = _rows()
    ram = {f"{r.backend} b={r.batch_size}": ram_to_serve(r) for r in rows}
    report = DeployReport(
        model="m",
        params=10,
        size_mb={"fp32 safetensors": 0.0123, "fp32 onnx": 1.5},
        ram_mb={k: mb for k, (mb, _) in ram.items()},
        ram_not_measured={k: why for k, (_, why) in ram.items() if why},
        latency_ms={"eager": {"p50": 0.05, "p99": 12.5, "status": "ok"}},
        throughput={r.backend: {"batch_size": 32, "samples_per_s": r.samples_per_s, "status": "ok"} for r in rows[1:]},
        max_batch={"budget_mb": 64.0, "max_batch": 8, "stopped_because": "budget"},
        machine={
            "cpu": "x",
            "cores": 2,
            "threads_used": 1,
            "isa_flags": [],
            "gpu": None,
            "torch": "t",
            "onnxruntime": None,
        },
        packages={},
        signature={"inputs": [], "outputs": [], "preprocessing": {"steps": []}},
    )
    md = deploy_markdown(report)
    assert "e+0" not in md and "e-0" not in md  # no scientific notation beside fixed-point figures
    assert "| eager | 109 K samples/s" in md and "| onnxruntime | 84.2 K samples/s" in md
    assert (
        "| eager b=1 | not measured (in-process lower bound 0.0 MB, model load left out; `archlab deploy` (isolate=True)"
        in md
    )
    assert "| onnxruntime b=32 | 41.5 |" in md
    assert "| fp32 safetensors | 0.0123 |" in md and "| fp32 onnx | 1.50 |" in md
    assert "p50 0.0500, p99 12.5" in md


def test_bench_table_columns_share_one_format():
    from archlab.bench.result import BenchResult
    from archlab.report.bench import bench_markdown

    result = BenchResult(model="m", threads=1, min_time_s=0.1, isolate=False, machine={"cpu": "x", "cores": 2})
    result.rows = _rows()
    lines = [line for line in bench_markdown(result).splitlines() if line.startswith(("| eager", "| onnxruntime"))]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    per_s = [c[7] for c in cells]
    assert per_s == ["0.960 K", "109 K", "84.2 K"]
    assert [c[9] for c in cells] == ["not measured (in-process)", ">= 3.00", "41.5"]


# -- predict with an export folder, without torch ---------------------------------------------


def test_cli_predict_export_dir_without_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from archlab.deploy import export

    model = archlab.create("mlp_tabular", in_features=4, hidden_sizes=[8], out_features=3).eval()
    export(model, "onnx", tmp_path / "exp")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    wrapper = tmp_path / "no_torch.py"
    wrapper.write_text(
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "from archlab.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m] is not None]\n"
        "sys.exit(code)\n"
    )
    out = tmp_path / "y.npy"
    argv = ["predict", str(tmp_path / "exp"), str(tmp_path / "x.npy"), "-o", str(out)]
    proc = subprocess.run([sys.executable, str(wrapper), *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"\(5, 3\) outputs", proc.stdout)
    with torch.no_grad():
        np.testing.assert_allclose(np.load(out), model(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=1e-4)
