"""The one vocabulary of modalities and tasks (issue 9)."""

from __future__ import annotations

import pytest

import archlab
from archlab import capabilities
from archlab.data import list_datasets
from archlab.errors import ConfigError
from archlab.registry import get_entry
from archlab.tasks import TASKS


def test_synonyms_map_to_one_word():
    for word in ("signal", "sequence", "timeseries", "time-series"):
        assert capabilities.modality(word) == "time_series"
    assert capabilities.task("language-modeling") == capabilities.task("lm") == "language_modeling"
    assert capabilities.task("token_classification") == "tagging"


def test_unknown_words_raise_with_a_hint():
    with pytest.raises(ConfigError, match="did you mean 'image'"):
        capabilities.modality("imag")
    with pytest.raises(ConfigError, match="unknown task"):
        capabilities.task("telepathy")


def test_registry_bundles_and_trainers_speak_the_vocabulary():
    for name in archlab.list_models():
        e = get_entry(name)
        assert e.modalities and set(e.modalities) <= set(capabilities.MODALITIES), name
        assert e.tasks and set(e.tasks) <= set(capabilities.TASKS), name
    for d in list_datasets():
        assert d["modality"] in capabilities.MODALITIES and set(d["tasks"]) <= set(capabilities.TASKS), d["name"]
    assert set(TASKS) <= set(capabilities.TASKS)


def test_register_rejects_an_unknown_word():
    from archlab.models.mlp import MLP, MLPConfig

    with pytest.raises(ConfigError, match="unknown modality 'pictures'"):
        archlab.register("mlp_vocab_test", family="mlp", model=MLP, config=MLPConfig, modalities=("pictures",))
    assert "mlp_vocab_test" not in archlab.list_models()


def test_list_models_finds_forecasters_for_series_data():
    sunspots = next(d for d in list_datasets() if d["name"] == "sunspots")
    found = archlab.list_models(modality=sunspots["modality"], task="forecasting")
    assert {"lstm_sine_forecaster", "tcn_forecaster", "ssm_forecaster"} <= set(found)
