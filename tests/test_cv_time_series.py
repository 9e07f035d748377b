"""Cross-validation of time-ordered data (archlab.runs.cv): forward-chaining by default, shuffling refused."""

import json

import pytest
import yaml

import archlab.runs.training as training
from archlab.cli.main import main
from archlab.errors import ConfigError
from archlab.runs.cv import cross_validate

TINY = dict(max_steps=2, batch_size=16, eval_every=2, checkpoint_every=2, precision="fp32", device="cpu")
DATA = {"window": 12, "horizon": 2}  # sunspots: season 11, which the baseline needs


@pytest.fixture(autouse=True)
def _no_pictures(monkeypatch):
    monkeypatch.setattr(training, "_draw_curves", lambda *a, **k: None)
    monkeypatch.setattr(training.PictureWriter, "picture", lambda *a, **k: None)


def test_cv_on_a_forecasting_series_chains_forward_and_records_fold_sizes(tmp_path, caplog):
    with caplog.at_level("INFO", logger="archlab"):
        cv = cross_validate("lstm_sine_forecaster", "sunspots", k=3, data_options=DATA, out_dir=tmp_path, **TINY)
    assert cv.split == "forward" and "forward-chaining" in caplog.text
    saved = json.loads((cv.run_dir / "cv_summary.json").read_text())
    assert saved["split"] == "forward" and len(saved["fold_sizes"]) == 3
    trains = [s["train"] for s in saved["fold_sizes"]]
    assert trains == sorted(trains) and len(set(trains)) == 3  # each fold trains on a longer past
    # Fold metrics measured on the validation block carry the Nadeau-Bengio interval.
    val_metrics = [m for m in saved["metrics"] if m.startswith("val_")]
    assert val_metrics and all("Nadeau-Bengio" in saved["metrics"][m]["interval"] for m in val_metrics)
    fold = yaml.safe_load((cv.member_dirs[2] / "config.yaml").read_text())
    assert fold["data"]["fold"]["split"] == "forward"


def test_shuffled_cv_of_a_series_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="time-ordered.*--cv-split forward"):
        cross_validate("lstm_sine_forecaster", "sunspots", k=3, split="shuffled", data_options=DATA, out_dir=tmp_path)
    argv = ["train", "-m", "lstm_sine_forecaster", "-d", "sunspots", "--cv", "3", "--cv-split", "shuffled"]
    assert main([*argv, "--out-dir", str(tmp_path), "-q"]) == 2
    assert not any(tmp_path.glob("*/fold-0"))  # refused before any fold trained
