"""An ONNX export folder serves without torch; int8 with a run directory reports the metric
change; deploy_report measures and checks budgets; the CLI commands run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from archlab.checkpoint import save
from archlab.data.preprocess import Preprocessing
from archlab.registry import create

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory laid out like archlab's trainer writes it (config.yaml, data_info.json,
    last/ with COMPLETE), holding an untrained cnn_digits: the export path does not care."""
    from archlab.data import load

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("run")
    bundle = load("digits", seed=0)
    model = create("cnn_digits")
    save(model, path / "last")
    (path / "last" / "COMPLETE").write_text(json.dumps({"step": 1}))
    (path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name": "cnn_digits", "config": model.config.to_dict()},
                "data": {"name": "digits", "options": {"seed": 0}},
                "task": {"name": "classification", "options": {}},
                "train": {"restore_best": False},
            }
        )
    )
    info = {k: v for k, v in bundle.info.items() if isinstance(v, (int, float, str, list, dict))}
    info["class_names"] = [f"digit {i}" for i in range(10)]
    info["preprocessing"] = Preprocessing.from_bundle(bundle).to_json()
    (path / "data_info.json").write_text(json.dumps(info))
    return path


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from archlab.deploy import export

    out = tmp_path_factory.mktemp("export")
    return export(run_dir, "onnx", out, int8=True), out


def test_folder_has_preprocessing_from_the_run(exported, run_dir):
    result, out = exported
    pre = json.loads((out / "preprocessing.json").read_text())
    info = json.loads((run_dir / "data_info.json").read_text())
    assert pre["class_names"][3] == "digit 3"
    assert pre["inputs"][0]["layout"].startswith("B C H W") and pre["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    if "normalization" in info:
        assert pre["normalization"] == info["normalization"]
    assert result.int8_file == "model.int8.onnx" and result.int8_size_bytes < result.size_bytes


def test_int8_with_a_run_directory_reports_the_test_metric_change(exported):
    m = exported[0].int8_metric
    assert m is not None and m["split"] == "test" and m["metric"] == "test_accuracy"
    assert m["delta"] == pytest.approx(m["int8"] - m["fp32"])
    assert 0.0 < m["fp32"] <= 1.0


def test_serve_runs_where_torch_cannot_be_imported(exported, run_dir, tmp_path):
    _, out = exported
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        f"sys.path.insert(0, {str(out)!r})\n"
        "import serve\n"
        f"serve.main([{str(out)!r}, {str(tmp_path / 'x.npy')!r}, '-o', {str(tmp_path / 'y.npy')!r}])\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from archlab.checkpoint import load
    from archlab.rundir import RunDir, final_checkpoint

    model = load(final_checkpoint(run_dir, RunDir(run_dir).read_config())).eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_serve_rejects_a_wrong_rank(exported):
    sys.path.insert(0, str(exported[1]))
    try:
        import serve

        with pytest.raises(ValueError, match="expected shape"):
            serve.load(exported[1]).predict(np.zeros((2, 64), np.float32))
    finally:
        sys.path.remove(str(exported[1]))
        sys.modules.pop("serve", None)


def test_serve_applies_the_recorded_steps_to_raw_pixels(exported, run_dir):
    """Raw digits (pixel values 0..16, (N, 8, 8)) through serve.py's numpy steps give the model
    the same inputs as archlab's own Preprocessing (pixel scaling, then train statistics)."""
    from sklearn.datasets import load_digits

    raw = load_digits().images[:20]
    prep = Preprocessing.from_json(json.loads((run_dir / "data_info.json").read_text())["preprocessing"])
    assert any(s["op"] == "scale" for s in prep.steps)
    sys.path.insert(0, str(exported[1]))
    try:
        import serve

        p = serve.load(exported[1])
        np.testing.assert_allclose(p.normalize(raw), prep.apply(raw), rtol=0, atol=1e-6)
        got = p.predict(raw.astype(np.float32), normalize=True)[0]
        ref = p.predict(prep.apply(raw))[0]
        np.testing.assert_allclose(got, ref, atol=1e-5)
        with pytest.raises(ValueError, match="expected samples of shape"):
            p.normalize(np.zeros((2, 65)))
    finally:
        sys.path.remove(str(exported[1]))
        sys.modules.pop("serve", None)


def test_cli_predict_helper_matches_serve(exported, tmp_path):
    from archlab.cli.bench import predict_export

    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    y = predict_export(exported[1], tmp_path / "x.npy")
    assert y.shape == (3, 10)
    y8 = predict_export(exported[1], tmp_path / "x.npy", int8=True)
    assert y8.shape == (3, 10) and not np.array_equal(y, y8)


def test_deploy_report_measures_and_checks_budgets(tmp_path, monkeypatch):
    from archlab.deploy import deploy_report
    from archlab.report.deploy import deploy_markdown, deploy_rich

    monkeypatch.setenv("ARCHLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("archlab.bench.roofline.SIZES", (128,))
    r = deploy_report(
        "mlp_784_128_10",
        latency_ms=1e4,
        memory_mb=1e4,
        size_mb=1e-3,
        batch_size=4,
        backends=("eager", "onnxruntime"),
        isolate=False,
        min_time_s=0.01,
        memory_budget_mb=64,
    )
    assert r.params == 784 * 128 + 128 + 128 * 10 + 10
    assert r.size_mb["fp32 safetensors"] > 1.9 * r.size_mb["fp16 safetensors"]
    assert r.size_mb["int8 onnx"] < r.size_mb["fp32 onnx"]
    # isolate=False: RAM measured in this process is a lower bound, not a figure a budget can pass
    assert {b.name: b.passed for b in r.budgets} == {"latency_ms": True, "memory_mb": None, "size_mb": False}
    assert all(v is None for v in r.ram_mb.values()) and set(r.ram_not_measured) == set(r.ram_mb)
    assert not r.passed and r.max_batch["max_batch"] >= 1
    assert "onnxruntime" in r.packages["onnx / onnx-int8 (serve.py)"]
    assert r.to_dict()["schema_version"] == 1
    md = deploy_markdown(r)
    assert "| size_mb | FAIL" in md
    assert "| isa flags |" in md
    assert deploy_rich(r).row_count > 10


def test_cli_bench_and_export(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from archlab.cli.bench import register

    monkeypatch.setenv("ARCHLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("archlab.bench.roofline.SIZES", (128,))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "bench",
            "mlp_784_128_10",
            "--batch",
            "1,2",
            "--no-isolate",
            "--min-time",
            "0.01",
            "--format",
            "json",
            "-o",
            str(tmp_path / "b.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["schema_version"] == 1 and [r["batch_size"] for r in d["rows"]] == [1, 2]
    res = runner.invoke(
        app, ["bench", "mlp_784_128_10", "--batch", "1", "--no-isolate", "--min-time", "0.01", "--format", "md"]
    )
    assert res.exit_code == 0 and "| eager | infer | 1 |" in res.output
    res = runner.invoke(app, ["export", "mlp_784_128_10", "--format", "pt2", "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "e" / "model.pt2").is_file()
