"""The benchmark harness: timing rules, rows per backend, parity flags, failures, train mode,
isolation, MFU with a cached roofline, Hugging Face keyword inputs. No timing assertions."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from archlab.bench import BACKENDS, BenchResult, benchmark, compare, max_batch_within, measure
from archlab.bench.backends import Runner
from archlab.bench.graph_export import flatten_outputs

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("archlab.bench.roofline.SIZES", (128, 256))  # a quick roofline for tests


def test_first_call_is_timed_apart_and_min_calls_hold():
    calls = []

    def fn():
        if not calls:
            time.sleep(0.3)  # "compilation"
        calls.append(1)

    t = measure(fn, min_time_s=0.01, min_calls=25)
    assert t.first_call_s >= 0.3
    assert t.calls >= 25
    assert max(t.times_s) < 0.3  # the slow first call is not in the latencies
    assert t.p(50) <= t.p(90) <= t.p(99)


def test_rows_per_backend_with_parity_mfu_and_restored_threads(tmp_path):
    torch.set_num_threads(1)
    r = benchmark(
        "mlp_784_128_10", batch_sizes=(1, 4), backends=("eager", "export", "onnxruntime"), threads=2, min_time_s=0.02
    )
    assert torch.get_num_threads() == 1  # restored
    assert r.threads == 2 and {row.threads for row in r.rows} == {2}
    assert [(row.backend, row.batch_size) for row in r.rows] == [
        ("eager", 1),
        ("eager", 4),
        ("export", 1),
        ("export", 4),
        ("onnxruntime", 1),
        ("onnxruntime", 4),
    ]
    for row in r.rows:
        assert row.status == "ok", row.reason
        assert row.calls >= 10 and row.p50_ms > 0 and row.p50_ms <= row.p99_ms
        assert row.first_call_ms > 0
        assert row.flops_per_call == 2 * row.batch_size * (784 * 128 + 128 * 10)
        assert row.mfu > 0 and row.mfu == pytest.approx(row.achieved_flops / r.peak_flops["fp32"])
    ort = r.row("onnxruntime", 4)
    assert ort.max_abs_diff < 1e-4 and ort.tolerance.startswith("fp32")
    assert (tmp_path / "cache" / "roofline.json").is_file()
    d = json.loads(r.to_json())
    assert d["schema_version"] == 1 and d["machine"]["threads_used"] == 2
    assert BenchResult.from_dict(d).row("eager", 1).p50_ms == r.row("eager", 1).p50_ms


def test_mismatched_backend_is_flagged_and_never_fastest(monkeypatch):
    def wrong(module, args, kwargs, ctx):
        def outputs(a, k):
            return [t + 1.0 for _, t in flatten_outputs(module(*a, **k))]

        return Runner("wrong", 0.0, bind=lambda a, k: lambda: None, outputs=outputs)

    monkeypatch.setitem(BACKENDS, "wrong", wrong)
    r = benchmark("mlp_784_128_10", batch_sizes=(2,), backends=("eager", "wrong"), min_time_s=0.01, mfu=False)
    bad = r.row("wrong", 2)
    assert bad.status == "mismatch" and bad.max_abs_diff == pytest.approx(1.0, abs=1e-5)
    assert bad.p50_ms < r.row("eager", 2).p50_ms  # it *is* faster (it does nothing) ...
    assert r.fastest(2).backend == "eager"  # ... but never reported as the fastest


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # control flow on values: torch.export cannot trace it
            return self.fc(x)
        return -self.fc(x)


def test_failing_backend_gives_a_row_and_the_others_run():
    r = benchmark(
        DataDependent(),
        torch.randn(2, 4),
        batch_sizes=(2,),
        backends=("eager", "onnxruntime", "export"),
        min_time_s=0.01,
        mfu=False,
    )
    assert r.row("eager", 2).ok
    for name in ("onnxruntime", "export"):
        row = r.row(name, 2)
        assert row.status == "failed"
        assert "DataDependent" in row.reason and "test_bench.py" in row.reason, row.reason


def test_train_mode_times_an_optimizer_step_without_touching_the_model():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    r = benchmark(model, torch.randn(4, 8), batch_sizes=(4,), modes=("infer", "train"), min_time_s=0.01)
    infer, train = r.row("eager", 4, "infer"), r.row("eager", 4, "train")
    assert train.ok and train.calls >= 10
    assert train.flops_per_call == 3 * infer.flops_per_call  # forward + backward (2x)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_mode_on_an_inference_backend_is_a_failed_row():
    r = benchmark(
        "mlp_784_128_10", batch_sizes=(2,), modes=("train",), backends=("onnxruntime",), min_time_s=0.01, mfu=False
    )
    assert r.rows[0].status == "failed" and "inference only" in r.rows[0].reason


def test_isolated_configuration_runs_in_a_fresh_process():
    r = benchmark("mlp_784_128_10", batch_sizes=(2,), isolate=True, min_time_s=0.01, mfu=False)
    row = r.rows[0]
    assert row.ok, row.reason
    assert "fresh process" in row.mem_method and row.peak_mem_mb > 0  # model load at least
    assert r.isolate


def test_isolate_needs_a_rebuildable_model():
    from archlab.errors import ConfigError

    with pytest.raises(ConfigError, match="isolate=True"):
        benchmark(nn.Linear(2, 2), torch.randn(1, 2), batch_sizes=(1,), isolate=True)


def test_hugging_face_model_with_keyword_inputs():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = transformers.BertModel(cfg).eval()
    inp = {"input_ids": torch.randint(0, 100, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    r = benchmark(model, inp, batch_sizes=(1, 3), backends=("eager", "export"), min_time_s=0.01, mfu=False)
    for row in r.rows:
        assert row.ok, row.reason


def test_compare_uses_the_dtype_tolerance():
    ref = [torch.tensor([10.0, -10.0])]
    assert compare([ref[0] + 1e-3], ref, "fp32")[2]
    assert not compare([ref[0] + 1.0], ref, "fp32")[2]
    assert compare([ref[0] + 1.0], ref, "int8")[2]
    assert not compare([torch.zeros(3)], ref, "fp32")[2]  # shape differs


def test_largest_batch_within_a_memory_budget():
    big = max_batch_within("mlp_784_128_10", memory_mb=1e6, max_batch=8)
    assert big.max_batch == 8 and list(big.measured) == [1, 2, 4, 8]
    tiny = max_batch_within("mlp_784_128_10", memory_mb=0.01)
    assert tiny.max_batch == 0 and "needs" in tiny.stopped_because  # the weights alone are 0.39 MB


def test_unknown_backend_and_mode_are_config_errors():
    from archlab.errors import ConfigError

    with pytest.raises(ConfigError, match="backend must be one of"):
        benchmark("mlp_784_128_10", backends=("tensorrt",))
    with pytest.raises(ConfigError, match="mode must be one of"):
        benchmark("mlp_784_128_10", modes=("serve",))
