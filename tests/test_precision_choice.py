"""``precision="auto"`` by measurement: candidates from the hardware, a few timed steps of the
actual model, the 10% rule, the calibration budget, the RNG left alone, and the choice recorded in
the run and reused by a resume."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from torch import nn

import archlab
from archlab.runs import resume
from archlab.train import precision as P
from test_train_support import digits_bundle

AMX = {"avx2", "amx_tile", "amx_bf16"}
AVX2 = {"avx2", "fma"}


class FakeSteps:
    """A trial whose steps advance a fake clock by a fixed time per precision (no real timing)."""

    def __init__(self, ms: dict[str, float], first_ms: float | None = None):
        self.ms, self.first_ms, self.now, self.made, self.calls = ms, first_ms, 0.0, [], []

    def clock(self) -> float:
        return self.now

    def __call__(self, precision: str):
        self.made.append(precision)

        def step():
            first = self.first_ms is not None and precision not in self.calls
            self.calls.append(precision)
            self.now += (self.first_ms if first else self.ms[precision]) / 1e3

        return step


def choose(fake: FakeSteps, flags=AMX, total_steps: int | None = 10_000, **kw) -> P.PrecisionChoice:
    return P.choose_precision("auto", "cpu", fake, total_steps=total_steps, flags=flags, clock=fake.clock, **kw)


def test_emulated_bf16_is_never_measured_nor_chosen():
    fake = FakeSteps({"fp32": 10.0, "bf16": 1.0})
    c = choose(fake, flags=AVX2)
    assert c.precision == "fp32" and not c.measured and fake.made == []
    assert "emulated" in c.reason


@pytest.mark.parametrize(
    ("bf16_ms", "expected"),
    [(8.0, "bf16"), (9.5, "fp32"), (14.2, "fp32")],  # 20% faster; only 5% faster; 1.42x slower
)
def test_a_lower_precision_must_be_ten_percent_faster(bf16_ms, expected):
    fake = FakeSteps({"fp32": 10.0, "bf16": bf16_ms})
    c = choose(fake)
    assert c.measured and c.precision == expected
    assert c.step_ms == {"fp32": 10.0, "bf16": bf16_ms}
    assert fake.made == ["fp32", "bf16"]  # one private copy per precision
    assert len(fake.calls) == 2 * (1 + P.TIMED_STEPS)


def test_cuda_candidates_include_fp16_and_the_fastest_wins():
    fake = FakeSteps({"fp32": 10.0, "bf16": 7.0, "fp16": 6.0})
    c = P.choose_precision("auto", "cuda", fake, flags=(), cuda_bf16=True, clock=fake.clock)
    assert c.precision == "fp16" and set(c.step_ms) == {"fp32", "bf16", "fp16"}


def test_warm_up_steps_are_not_counted():
    fake = FakeSteps({"fp32": 10.0, "bf16": 5.0}, first_ms=500.0)
    assert choose(fake, total_steps=None).step_ms == {"fp32": 10.0, "bf16": 5.0}


def test_a_short_run_is_not_calibrated():
    fake = FakeSteps({"fp32": 10.0, "bf16": 5.0})
    c = choose(fake, total_steps=100)  # 8 calibration steps are more than 2% of 100
    assert not c.measured and c.precision == "bf16" and fake.made == []  # the static rule
    assert "2%" in c.reason


def test_calibration_stops_when_it_would_cost_more_than_the_budget():
    # a first step of 30 s against a run of 1000 steps of 10 ms (10 s): stop, static rule
    fake = FakeSteps({"fp32": 10.0, "bf16": 5.0}, first_ms=30_000.0)
    c = choose(fake, total_steps=1000)
    assert not c.measured and c.step_ms == {} and "static rule" in c.reason
    assert fake.calls == ["fp32", "fp32"]  # stopped after fp32's warm-up and first timed step


def test_an_explicit_request_is_kept_without_measuring():
    fake = FakeSteps({"fp32": 10.0, "bf16": 1.0})
    assert P.choose_precision("fp32", "cpu", fake, flags=AMX).precision == "fp32"
    assert fake.made == []


def test_a_step_that_fails_falls_back_to_the_static_rule():
    def trial(precision):
        raise RuntimeError("cannot copy")

    c = P.choose_precision("auto", "cpu", trial, flags=AMX)
    assert c.precision == "bf16" and not c.measured and "RuntimeError" in c.reason


def test_measuring_real_steps_leaves_rng_and_model_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))

    def trial(precision):
        import copy

        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), 0.1)

        def step():
            with P.autocast(torch.device("cpu"), precision):
                loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()

        return step

    state = torch.get_rng_state()
    c = P.choose_precision("auto", "cpu", trial, flags=AMX)
    assert c.measured and set(c.step_ms) == {"fp32", "bf16"}
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_choice_round_trips_and_rejects_a_bad_record():
    c = P.PrecisionChoice("auto", "bf16", "cpu", {"fp32": 3.0, "bf16": 2.0}, True, "measured")
    assert P.PrecisionChoice.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert "fp32 3 ms" in c.line() and "bf16 2 ms" in c.line()
    with pytest.raises(archlab.errors.ConfigError, match="precision"):
        P.PrecisionChoice.from_dict({"precision": "int4"})


# -- in a run: measured once, recorded, reused by a resume -------------------------------------

TRAIN = dict(
    max_steps=40, batch_size=32, lr=3e-3, log_every=10, eval_every=20, checkpoint_every=20, seed=3, device="cpu"
)


def _build():
    torch.manual_seed(0)
    return archlab.create("mlp_tabular", in_features=64, out_features=10, hidden_sizes=[32], dropout=0.2)


@pytest.fixture
def amx_machine(monkeypatch):
    """This machine as if it had AMX (bf16 is then a candidate and measured), with a budget that
    lets a 40-step run calibrate, and fp32 kept (no lower precision can be 100% faster), so the
    run trains exactly as an fp32 one."""
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset(AMX))
    monkeypatch.setattr(P, "BUDGET", 100.0)
    monkeypatch.setattr(P, "MIN_GAIN", 1.0)
    calls = []
    measure = P._measure
    monkeypatch.setattr(P, "_measure", lambda *a: calls.append(1) or measure(*a))
    return calls


def test_auto_records_its_measurement_and_a_resume_reuses_it(tmp_path, amx_machine, caplog):
    data = digits_bundle()
    with caplog.at_level(logging.INFO, logger="archlab"):
        auto = archlab.fit(_build(), data, out_dir=tmp_path, run_name="auto", precision="auto", **TRAIN)
    assert len(amx_machine) == 1  # measured once, for the cost line and the engine
    choice = auto.metrics["precision_choice"]
    assert choice["measured"] and set(choice["step_ms"]) == {"fp32", "bf16"} and auto.metrics["precision"] == "fp32"
    saved = yaml.safe_load((auto.run_dir / "config.yaml").read_text())
    assert saved["train"]["precision"] == "auto" and saved["precision"] == choice
    state = json.loads((auto.run_dir / "last" / "state.json").read_text())
    assert state["extra"]["precision"] == choice
    lines = [r.getMessage() for r in caplog.records if "step fp32" in r.getMessage()]
    assert any(m.startswith("cost:") for m in lines) and any(m.startswith("precision: fp32") for m in lines)

    # measuring changed nothing: the same weights, bitwise, as a run told fp32
    fixed = archlab.fit(_build(), data, out_dir=tmp_path, run_name="fp32", precision="fp32", **TRAIN)
    for k, v in fixed.model.state_dict().items():
        assert torch.equal(v, auto.model.state_dict()[k]), k

    # a resume of a run stopped after its step-20 checkpoint reads the choice from the checkpoint:
    # no second measurement, the same record
    class Stop(archlab.Reporter):
        def record(self, rec):
            if rec.get("kind") == "train" and rec["step"] >= 30:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        archlab.fit(_build(), data, out_dir=tmp_path, run_name="stopped", precision="auto", reporter=Stop(), **TRAIN)
    first = json.loads((tmp_path / "stopped" / "last" / "state.json").read_text())["extra"]["precision"]
    amx_machine.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="archlab"):
        again = resume(tmp_path / "stopped", data=data)
    assert amx_machine == [] and again.metrics["precision_choice"] == first and again.steps == 40
    assert any("reused from the run's checkpoint" in r.getMessage() for r in caplog.records)
    # a finished run resumed is left as it is, and says the same choice
    assert resume(auto.run_dir, data=data).metrics["precision_choice"] == choice and amx_machine == []
