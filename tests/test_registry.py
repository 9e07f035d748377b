import pytest
import torch

import archlab
from archlab.config import parse_override
from archlab.errors import ConfigError
from archlab.models.mlp import MLP, MLPConfig


def test_unknown_name_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'mlp_tabular'"):
        archlab.create("mlp_tabluar")


def test_duplicate_name_raises():
    with pytest.raises(ConfigError, match="already registered"):
        archlab.register("mlp_tabular", family="mlp", model=MLP, config=MLPConfig)


def test_list_models_filters_with_globs():
    assert "mlp_tabular" in archlab.list_models("mlp_*")
    assert archlab.list_models(family="mlp", task="regression") == ["mlp_regressor"]
    assert archlab.list_models(modality="nonexist*") == []
    with pytest.raises(ConfigError, match="unknown modality"):
        archlab.list_models(modality="nonexistent-modality")


def test_overrides_and_create_from_config_agree():
    m = archlab.create("mlp_tabular", hidden_sizes=[8], in_features=5)
    assert m.config.hidden_sizes == [8]
    cfg = m.config.with_overrides(["hidden_sizes=[4,3]", "dropout=0.25"])
    m2 = archlab.create_from_config(cfg, name="mlp_tabular")
    assert [layer.out_features for layer in m2.body if isinstance(layer, torch.nn.Linear)] == [4, 3]
    m3 = archlab.create_from_config({"model": "mlp_tabular", "config": cfg.to_dict()})
    assert m3.config == cfg


def test_misspelt_key_names_allowed_keys():
    with pytest.raises(ConfigError) as info:
        archlab.create("mlp_tabular", hiden_sizes=[3])
    msg = str(info.value)
    assert "did you mean 'hidden_sizes'" in msg and "allowed keys" in msg and "dropout" in msg


def test_bad_override_type_is_clear():
    cfg = MLPConfig()
    with pytest.raises(ConfigError, match="dropout='abc'"):
        cfg.with_overrides(["dropout=abc"])
    with pytest.raises(ConfigError, match="key=value"):
        cfg.with_overrides(["dropout"])
    with pytest.raises(ConfigError, match="hidden_sizes"):
        cfg.with_overrides(["hidden_sizes=[0,3]"])


def test_parse_override_types():
    assert parse_override("a=[256,128]") == ("a", [256, 128])
    assert parse_override("a=0.1") == ("a", 0.1)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a.b=gelu") == ("a.b", "gelu")


def test_range_error_names_field_and_value():
    with pytest.raises(ConfigError, match="dropout=1.5"):
        MLPConfig.build(dropout=1.5)
