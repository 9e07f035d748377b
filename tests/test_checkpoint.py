import json

import pytest
import torch

import archlab
from archlab.checkpoint import load_state_dict_file, load_state_into, tensors_from_bytes, tensors_to_bytes
from archlab.errors import CheckpointError


@pytest.fixture
def saved(tmp_path):
    model = archlab.create("mlp_tabular", in_features=6, hidden_sizes=[5], out_features=3)
    archlab.save(model, tmp_path / "run")
    return model, tmp_path / "run"


def test_save_writes_config_and_safetensors(saved):
    _, d = saved
    meta = json.loads((d / "config.json").read_text())
    assert meta["model"] == "mlp_tabular" and meta["config"]["hidden_sizes"] == [5]
    assert meta["archlab_version"] == archlab.__version__
    assert (d / "model.safetensors").read_bytes()[:8]  # non-empty header
    assert not list(d.glob("*.tmp")), "temporary files left behind"


def test_truncated_weights_raise_checkpoint_error(saved):
    _, d = saved
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: SHA-256 mismatch"):
        archlab.load(d)
    (d / "manifest.json").unlink()  # unverified (an older save): the parser still catches it
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        archlab.load(d)


def test_garbage_config_raises_checkpoint_error(saved):
    _, d = saved
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        archlab.load(d)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        archlab.load(tmp_path / "nowhere")


def test_mismatched_tensors_are_listed(saved):
    model, d = saved
    state = dict(model.state_dict())
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(9, 9)
    with pytest.raises(CheckpointError) as info:
        load_state_into(model, state)
    msg = str(info.value)
    assert "missing tensors: head.bias" in msg and "extra.weight" in msg and "head.weight" in msg


def test_compiled_and_ddp_prefixes_load(saved):
    model, _ = saved
    fresh = archlab.create_from_config(model.config, name="mlp_tabular")
    state = {f"module._orig_mod.{k}": v.clone() for k, v in model.state_dict().items()}
    load_state_into(fresh, state)
    x = torch.randn(4, 6)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_tied_weights_round_trip():
    lin = torch.nn.Linear(3, 3)
    state = {"a": lin.weight, "b": lin.weight, "c": lin.bias}
    back = tensors_from_bytes(tensors_to_bytes(state))
    assert torch.equal(back["a"], back["b"]) and set(back) == {"a", "b", "c"}


def test_pt_files_load_weights_only(tmp_path, saved):
    model, _ = saved
    torch.save(model.state_dict(), tmp_path / "w.pt")
    state = load_state_dict_file(tmp_path / "w.pt")
    assert set(state) == set(model.state_dict())
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_state_dict_file(tmp_path / "bad.pt")
