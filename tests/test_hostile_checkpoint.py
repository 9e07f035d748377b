"""Hostile and broken checkpoints and run files: every one is a typed error naming the file (and
the field), a corrupted checkpoint is never loaded silently, and resume falls back to the last
checkpoint that verifies."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import archlab
from archlab.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, tensors_from_bytes, tensors_to_bytes
from archlab.errors import CheckpointError
from archlab.rundir import COMPLETE, RunDir, find_checkpoint, verify_checkpoint
from archlab.train.state import (
    STATE_JSON,
    STATE_TENSORS,
    TrainState,
    read_checkpoint_meta,
    restore_checkpoint,
    write_checkpoint,
)


def _model():
    return archlab.create("mlp_tabular", in_features=6, hidden_sizes=[5], out_features=3)


def _flip_bit(path, offset_from_end: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01  # inside the tensor data, past the header
    path.write_bytes(bytes(data))


def _write(directory, model, step: int):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    state = TrainState(step=step, perm=torch.randperm(10))
    write_checkpoint(
        directory, model, state=state, optimizers=[opt], schedulers=[None], data_gen=torch.Generator().manual_seed(step)
    )
    return opt


def _restore(directory, model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    state = TrainState()
    restore_checkpoint(directory, model, state, [opt], [None], None, torch.Generator(), torch.device("cpu"))
    return state


# -- archlab.save / archlab.load ------------------------------------------------------------------


def test_save_writes_a_manifest_of_sha256_digests(tmp_path):
    archlab.save(_model(), tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / MANIFEST_FILE).read_text())
    assert set(manifest["sha256"]) == {"config.json", WEIGHTS_FILE}
    assert all(len(d) == 64 for d in manifest["sha256"].values())


def test_a_bit_flip_in_the_weights_is_refused_naming_the_file(tmp_path):
    archlab.save(_model(), tmp_path / "m")
    _flip_bit(tmp_path / "m" / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: SHA-256 mismatch"):
        archlab.load(tmp_path / "m")


def test_a_save_without_manifest_still_loads(tmp_path):
    model = _model()
    archlab.save(model, tmp_path / "m")
    (tmp_path / "m" / MANIFEST_FILE).unlink()  # as written by an archlab before manifests
    loaded = archlab.load(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_non_finite_weights_are_refused_unless_allowed(tmp_path):
    model = _model()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    archlab.save(model, tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"non-finite.*head\.weight.*allow_nonfinite"):
        archlab.load(tmp_path / "m")
    assert torch.isnan(archlab.load(tmp_path / "m", allow_nonfinite=True).head.weight).all()


@pytest.mark.parametrize(
    "content,match",
    [
        ({"model": ["mlp_tabular"], "config": {}}, "field 'model' must be a model name"),
        ({"model": "mlp_tabular", "config": [1, 2]}, "field 'config' must be a mapping"),
        ([1, 2, 3], "lacks the keys"),
    ],
)
def test_malformed_config_json_names_the_field(tmp_path, content, match):
    archlab.save(_model(), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(content))
    (tmp_path / "m" / MANIFEST_FILE).unlink()  # not a digest problem: a malformed file
    with pytest.raises(CheckpointError, match=match) as info:
        archlab.load(tmp_path / "m")
    assert "config.json" in str(info.value)


def test_config_json_that_is_not_utf8(tmp_path):
    archlab.save(_model(), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_bytes(b"\xff\xfe{\x00")
    (tmp_path / "m" / MANIFEST_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is not UTF-8"):
        archlab.load(tmp_path / "m")


def test_alias_metadata_pointing_at_a_missing_tensor():
    w = torch.zeros(2, 2)
    data = tensors_to_bytes({"a": w, "b": w})  # b is stored as an alias of a
    assert torch.equal(tensors_from_bytes(data)["b"], w)
    forged = tensors_to_bytes({"a": w}, {"archlab.aliases": json.dumps({"b": "nope"})})
    with pytest.raises(CheckpointError, match=r"f\.safetensors.*'b' to 'nope', which is not a tensor"):
        tensors_from_bytes(forged, "f.safetensors")
    garbage = tensors_to_bytes({"a": w}, {"archlab.aliases": "{not json"})
    with pytest.raises(CheckpointError, match="not a JSON mapping"):
        tensors_from_bytes(garbage, "f.safetensors")


# -- training checkpoints ---------------------------------------------------------------------------


def test_complete_marker_records_every_file(tmp_path):
    _write(tmp_path / "last", _model(), 3)
    marker = json.loads((tmp_path / "last" / COMPLETE).read_text())
    assert marker["step"] == 3
    assert set(marker["sha256"]) == {"config.json", WEIGHTS_FILE, MANIFEST_FILE, STATE_TENSORS, STATE_JSON}
    assert verify_checkpoint(tmp_path / "last") == 3


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, STATE_TENSORS, STATE_JSON, "config.json"])
def test_corrupt_last_falls_back_to_the_previous_checkpoint(tmp_path, caplog, victim):
    model = _model()
    _write(tmp_path / "last", model, 3)
    _write(tmp_path / "last", model, 6)  # the step-3 checkpoint is kept as last.prev
    assert find_checkpoint(tmp_path, "last") == tmp_path / "last"
    _flip_bit(tmp_path / "last" / victim, offset_from_end=3)
    with caplog.at_level(logging.WARNING, logger="archlab.rundir"):
        found = find_checkpoint(tmp_path, "last")
    assert found == tmp_path / "last.prev"
    assert victim in caplog.text and "SHA-256 mismatch" in caplog.text
    with pytest.raises(CheckpointError, match=f"{victim}: SHA-256 mismatch"):
        _restore(tmp_path / "last", _model())
    assert _restore(found, _model()).step == 3


def test_complete_marker_whose_model_file_is_missing(tmp_path):
    _write(tmp_path / "last", _model(), 2)
    (tmp_path / "last" / WEIGHTS_FILE).unlink()
    assert find_checkpoint(tmp_path, "last") is None
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        verify_checkpoint(tmp_path / "last")


@pytest.mark.parametrize("marker", [b"\xff\xff", b"[1, 2]", b'{"step": "7"}', b'{"step": 1, "sha256": [1]}'])
def test_malformed_complete_marker_is_skipped(tmp_path, marker):
    _write(tmp_path / "last", _model(), 2)
    (tmp_path / "last" / COMPLETE).write_bytes(marker)
    assert find_checkpoint(tmp_path, "last") is None
    with pytest.raises(CheckpointError, match="COMPLETE|digests"):
        verify_checkpoint(tmp_path / "last")


def _unverified(directory) -> None:
    """Drop the digests from the marker, as an older archlab wrote it: parsing must still hold."""
    marker = json.loads((directory / COMPLETE).read_text())
    (directory / COMPLETE).write_text(json.dumps({"step": marker["step"]}))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"\xff\xfe\x00garbage", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[]", "'<top level>' must be a mapping"),
        (None, "'train.step' must be an integer >= 0; got '7'"),
        ("missing", "'train.epoch' must be present"),
        ("bool", "'train.stopped_early' must be true or false"),
        ("rng", "'rng' must be the numpy and python RNG states"),
    ],
)
def test_malformed_state_json_names_the_file_and_field(tmp_path, content, match):
    _write(tmp_path / "last", _model(), 2)
    path = tmp_path / "last" / STATE_JSON
    meta = json.loads(path.read_text())
    if content is None:
        meta["train"]["step"] = "7"
    elif content == "missing":
        del meta["train"]["epoch"]
    elif content == "bool":
        meta["train"]["stopped_early"] = 0
    elif content == "rng":
        meta["rng"] = {"numpy": 5}
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(meta))
    _unverified(tmp_path / "last")
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint_meta(tmp_path / "last")
    assert STATE_JSON in str(info.value)
    with pytest.raises(CheckpointError):
        _restore(tmp_path / "last", _model())


def test_round_trip_restores_the_step_and_weights(tmp_path):
    model = _model()
    _write(tmp_path / "last", model, 5)
    fresh = _model()
    assert _restore(tmp_path / "last", fresh).step == 5
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


# -- run files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,match",
    [
        ("model: !!python/object/apply:os.system ['echo pwned']\n", r"could not determine a constructor.*line 1"),
        ("model: [1, 2\ntrain: {}\n", r"not valid safe YAML.*line 2"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_config_yaml_errors_name_the_file(tmp_path, text, match):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match=match) as info:
        RunDir(tmp_path).read_config()
    assert "config.yaml" in str(info.value)


def test_config_yaml_not_utf8(tmp_path):
    (tmp_path / "config.yaml").write_bytes(b"model: \xff\xfe\n")
    with pytest.raises(CheckpointError, match=r"config\.yaml is not UTF-8"):
        RunDir(tmp_path).read_config()


def test_metrics_lines_that_are_not_records_are_skipped(tmp_path, caplog):
    run = RunDir(tmp_path)
    run.metrics_file.write_bytes(
        b'{"step": 1, "loss": 2.0}\n\xff\xfe\n[1, 2]\n{"step": "x"}\n{"step": 2, "loss": 1.0}\n{"step": 3, "lo'
    )
    with caplog.at_level(logging.WARNING, logger="archlab.rundir"):
        records = run.read_metrics()
    assert [r["step"] for r in records] == [1, 2]
    assert "skipped 3 line(s)" in caplog.text
    run.truncate_metrics(1)
    assert [r["step"] for r in run.read_metrics()] == [1]
