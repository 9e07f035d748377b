"""Every CLI failure is one clear line on stderr, a non-zero exit and no traceback (issues 15, 16)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from archlab.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert (
        main(
            [
                "train",
                "--model",
                "mlp_tabular",
                "--data",
                "iris",
                "--quiet",
                "--out-dir",
                str(out),
                "--name",
                "r",
                "--set",
                "max_steps=3",
                "--set",
                "precision=fp32",
            ]
        )
        == 0
    )
    return out / "r"


def _broken_copy(run_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(run_dir, dst)
    return dst


def _corrupt(run_dir, tmp_path):
    d = _broken_copy(run_dir, tmp_path, "corrupt")
    for p in d.glob("*/model.safetensors"):  # every checkpoint, or loading falls back to one that verifies
        data = bytearray(p.read_bytes())
        data[-5] ^= 0xFF  # one bit flip in the tensor data
        p.write_bytes(bytes(data))
    return d


def _truncated(run_dir, tmp_path):
    d = _broken_copy(run_dir, tmp_path, "truncated")
    for p in d.glob("*/model.safetensors"):
        p.write_bytes(p.read_bytes()[:40])
    return d


def _yaml_tag(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("model: !!python/object/apply:os.system ['echo pwned']\ndata: iris\n")
    return p


CASES = {
    # (arguments, the substrings naming what was received and what was expected)
    "mistyped command": (lambda r, t: ["trian"], ("No such command 'trian'", "Did you mean 'train'")),
    "unknown option": (lambda r, t: ["train", "--bogus"], ("No such option: --bogus", "archlab --help")),
    "unknown model": (
        lambda r, t: ["train", "--model", "mlp_tabluar", "--data", "iris"],
        ("unknown model 'mlp_tabluar'", "did you mean 'mlp_tabular'"),
    ),
    "bad --set value": (
        lambda r, t: ["train", "--model", "mlp_tabular", "--data", "iris", "--set", "lr=abc"],
        ("lr='abc'", "valid number"),
    ),
    "unknown key": (
        lambda r, t: ["train", "--model", "mlp_tabular", "--data", "iris", "--set", "model.widht=3"],
        ("unknown key 'widht'", "allowed keys"),
    ),
    "nonexistent path": (lambda r, t: ["summary", "/no/such/run"], ("/no/such/run: no such file", "expected")),
    "wrong-shaped predict input": (lambda r, t: ["predict", str(r), str(_npy(t, (2, 7)))], "expects"),
    "NaN predict input": (lambda r, t: ["predict", str(r), str(_npy(t, (2, 4), nan=True))], "NaN"),
    "not an npy file": (lambda r, t: ["predict", str(r), str(_garbage(t))], ".npy"),
    "generate on a classifier": (lambda r, t: ["generate", str(r)], "generate works for"),
    "model that does not fit the data": (
        lambda r, t: ["train", "--model", "gcn_karate", "--data", "iris"],
        ("takes graph data", "'iris' is tabular"),
    ),
    "corrupt checkpoint": (lambda r, t: ["evaluate", str(_corrupt(r, t))], "CheckpointError"),
    "truncated safetensors": (lambda r, t: ["evaluate", str(_truncated(r, t))], "CheckpointError"),
    "YAML tag in a run file": (lambda r, t: ["train", str(_yaml_tag(t))], "run file"),
}


def _npy(tmp_path, shape, nan=False):
    a = np.zeros(shape, dtype=np.float32)
    if nan:
        a[0, 0] = np.nan
    p = tmp_path / "x.npy"
    np.save(p, a)
    return p


def _garbage(tmp_path):
    p = tmp_path / "garbage.npy"
    p.write_bytes(b"\x00\x01 not numpy")
    return p


@pytest.mark.parametrize("case", list(CASES))
def test_failure_is_one_line(case, run_dir, tmp_path, capsys):
    make_args, expected = CASES[case]
    rc = main(make_args(run_dir, tmp_path))
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in lines[0], lines[0]


def test_failed_run_leaves_its_name_free(tmp_path, capsys):
    """A run that fails before its first step removes its directory, so --name can be reused."""
    args = ["train", "--model", "mlp_tabular", "--data", "iris", "--quiet", "--out-dir", str(tmp_path), "--name", "n"]
    assert main([*args, "--set", "monitor=val_nothing", "--set", "max_steps=2", "--set", "eval_every=1"]) != 0
    assert "monitor" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
    assert main([*args, "--set", "max_steps=2"]) == 0
    assert (tmp_path / "n" / "final_metrics.json").exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["trian"], "UsageError"),
        (["train", "--model", "mlp_tabluar", "--data", "iris"], "ConfigError"),
        (["summary", "/no/such/run"], "ConfigError"),
    ],
)
def test_debug_shows_the_traceback(args, error):
    """``--debug`` re-raises, so the traceback of the one-line failure is shown."""
    with pytest.raises(Exception) as info:
        main(["--debug", *args])
    assert error in type(info.value).__name__
