"""Auto-sizing: the largest config of a family within the budgets, from meta-device analysis."""

from __future__ import annotations

import pytest
import yaml

from archlab.advise import autosize
from archlab.advise.knobs import FAMILY_KNOBS, Knob, apply
from archlab.errors import ConfigError


@pytest.mark.parametrize(
    "name", ["mlp_tabular", "cnn_digits", "resnet20_cifar", "transformer_encoder_256", "lstm_classifier"]
)
def test_params_budget_lands_in_85_to_100_percent(name):
    sized = autosize(name, params_max=100_000)
    assert sized.fits and 85_000 <= sized.params <= 100_000, (sized.params, sized.overrides)
    assert any(c.pareto for c in sized.candidates) and sized.stop_reason


def test_heads_divide_d_model():
    cfg = apply(
        FAMILY_KNOBS["transformer"],
        {"d_model": 256, "n_heads": 8, "n_layers": 3, "d_ff": 512},
        0.37,
        1.0,
        "transformer",
    )
    assert cfg["d_model"] % cfg["n_heads"] == 0 and cfg["d_model"] // cfg["n_heads"] >= 8


def test_depth_length_knob_repeats_last():
    cfg = apply((Knob("hidden_sizes", "depth", "length"),), {"hidden_sizes": [64, 32]}, 1.0, 2.0)
    assert cfg["hidden_sizes"] == [64, 32, 32, 32]


def test_a_7b_transformer_is_sized_without_allocating_it():
    # 7e9 fp32 parameters are 28 GB, more than this machine's memory: sized on the meta device
    sized = autosize("gpt2_small", params_max=7_000_000_000)
    assert 6.0e9 <= sized.params <= 7.0e9 and sized.fits


def test_flops_budget_and_yaml_round_trip(tmp_path):
    sized = autosize("mlp_tabular", "iris", flops_max=200_000)
    assert sized.fits and sized.flops <= 200_000
    section = yaml.safe_load(sized.to_yaml())["model"]
    assert section["name"] == "mlp_tabular" and section["in_features"] == 4 and section["out_features"] == 3
    from archlab.registry import create

    model = create(section.pop("name"), device="meta", **section)
    assert sum(p.numel() for p in model.parameters()) == sized.params


def test_latency_budget_is_met_as_measured():
    sized = autosize("mlp_tabular", params_max=2_000_000, latency_ms=2.0)
    assert sized.fits and sized.latency_ms <= 2.0 and sized.latency_method


def test_nothing_fits_says_so_and_bad_budgets_raise():
    sized = autosize("resnet50", params_max=10)
    assert not sized.fits and "nothing" in sized.stop_reason
    with pytest.raises(ConfigError):
        autosize("mlp_tabular")
    with pytest.raises(ConfigError):
        autosize("mlp_tabular", params_max=-1)


def test_a_family_without_knobs_is_judged_as_it_is():
    from archlab.advise import autosize

    fits = autosize("dlinear", "airline", params_max=100_000)
    assert fits.fits and fits.params < 100_000 and "no scaling knobs" in fits.stop_reason
    assert fits.overrides["seq_len"] > 0  # fitted to the data's window
    over = autosize("dlinear", "airline", params_max=10)
    assert not over.fits and over.stop_reason.endswith("over params_max")
