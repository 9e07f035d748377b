"""``archlab train`` / ``evaluate`` / ``predict`` on a bundled dataset."""

from __future__ import annotations

import json

import numpy as np
import yaml

from archlab.cli.main import main


def _run_dir(out: str):
    line = next(ln for ln in out.splitlines() if "run directory:" in ln)
    return line.split("run directory:")[1].strip()


def test_train_evaluate_predict_roundtrip(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--model",
            "mlp_tabular",
            "--data",
            "breast_cancer",
            "--quiet",
            "--out-dir",
            str(tmp_path),
            "--set",
            "train.max_steps=30",
            "--set",
            "model.hidden_sizes=[16]",
            "--set",
            "lr=3e-3",
            "--set",
            "precision=fp32",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    run = _run_dir(out)
    assert "test_accuracy" in out
    cfg = yaml.safe_load(open(f"{run}/config.yaml"))
    assert cfg["model"]["config"]["hidden_sizes"] == [16] and cfg["model"]["config"]["in_features"] == 30
    assert cfg["train"]["lr"] == 3e-3 and cfg["train"]["max_steps"] == 30 and cfg["data"]["name"] == "breast_cancer"
    final = json.load(open(f"{run}/final_metrics.json"))

    assert main(["evaluate", run]) == 0
    out = capsys.readouterr().out
    assert f"{final['test_accuracy']:.4f}" in out  # the same weights give the same test accuracy

    pred_file = tmp_path / "pred.npy"
    assert main(["predict", run, "test", "-o", str(pred_file)]) == 0
    preds = np.load(pred_file)
    assert preds.dtype == np.int64 and set(np.unique(preds)) <= {0, 1}

    x = np.random.default_rng(0).normal(size=(5, 30)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", run, str(tmp_path / "x.npy")]) == 0
    assert "5 predictions" in capsys.readouterr().out

    # resuming a finished run changes nothing and reports the same metrics
    assert main(["train", "--resume", run, "--quiet"]) == 0
    assert json.load(open(f"{run}/final_metrics.json"))["test_accuracy"] == final["test_accuracy"]


def test_train_from_run_file(tmp_path, capsys):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "mlp_tabular", "hidden_sizes": [8]},
                "data": "wine",
                "train": {"max_steps": 5, "precision": "fp32", "out_dir": str(tmp_path), "run_name": "wine"},
            }
        )
    )
    assert main(["train", str(run_file), "--quiet"]) == 0
    cfg = yaml.safe_load((tmp_path / "wine" / "config.yaml").read_text())
    assert cfg["model"]["config"]["hidden_sizes"] == [8] and cfg["model"]["config"]["out_features"] == 3


def test_train_errors_are_one_line(tmp_path, capsys):
    assert (
        main(["train", "--model", "mlp_tabular", "--data", "wine", "--set", "train.lrr=1", "--out-dir", str(tmp_path)])
        == 2
    )
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(["train", "--model", "mlp_tabular"]) == 2
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
