"""Hugging Face encoders as archlab models: hf:SOURCE runs, freezing, lr groups, LoRA adapters.

Most tests use a tiny BERT built from a config (saved to a temporary directory with the MiniLM
package's tokenizer files); one loads the offline all-MiniLM-L6-v2 package itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never the network

import pytest
import torch
from safetensors import safe_open

import archlab
from archlab.data.hf_text import resolve_source
from archlab.errors import ConfigError
from archlab.train.config import TrainConfig
from archlab.train.optim import build_optimizer
from archlab.train.transfer import TransferConfig, apply_transfer

transformers = pytest.importorskip("transformers")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
TINY = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A local Hugging Face directory: a tiny random BERT with MiniLM's (uncased WordPiece) tokenizer."""
    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(vocab_size=30522, **TINY)).save_pretrained(path)
    minilm = resolve_source("all-minilm-l6-v2")
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, path / name)
    return str(path)


def _tiny(**overrides):
    return archlab.create("hf_classifier", num_classes=3, **overrides)


def _perturb_lora(model):
    with torch.no_grad():  # LoRA's B starts at zero; make the adapters change the output
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


def _fit_tiny(tiny_dir, out_dir, **train):
    """Two steps of hf:TINY_DIR on a few passages of shakespeare_genre (tokenised by its tokenizer)."""
    return archlab.fit(
        f"hf:{tiny_dir}",
        "shakespeare_genre",
        data_spec={"name": "shakespeare_genre", "options": {"max_per_play": 1, "max_len": 16}},
        out_dir=out_dir,
        max_steps=2,
        batch_size=4,
        **train,
    )


def test_fit_save_load_evaluate_predict_round_trip(tiny_dir, tmp_path):
    from archlab.runs.use import evaluate, load_run, predict

    result = _fit_tiny(tiny_dir, tmp_path)
    saved, model, task, ckpt = load_run(result.run_dir)
    source = str(Path(tiny_dir).resolve())  # a directory is recorded as an absolute path
    assert saved["data"]["options"]["tokenizer"] == source  # the run reloads the same tokens
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["model"] == "hf_classifier" and meta["config"]["source"] == source
    assert meta["config"]["hf_config"]["model_type"] == "bert"  # the HF config beside the weights
    again = evaluate(result.run_dir)
    assert again["test_f1"] == pytest.approx(result.metrics["test_f1"])
    assert again["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    pred = predict(result.run_dir, "test")
    assert pred.ndim == 1 and len(pred) > 0 and set(pred.tolist()) <= {0, 1, 2}
    x = model.example_input(3)
    with torch.no_grad():
        assert torch.equal(model.eval()(*x), result.model.eval()(*x))


def test_cli_train_hf_directory(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    import archlab.cli.train  # noqa: F401  (registers the train command on app)
    from archlab.cli.app import app

    args = ["train", "--model", f"hf:{tiny_dir}", "--data", "shakespeare_genre", "--quiet", "--out-dir", str(tmp_path)]
    args += ["--set", "data.max_per_play=1", "--set", "data.max_len=16", "--set", "train.max_steps=1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "test_f1" in res.output and len(list(tmp_path.iterdir())) == 1


def test_freeze_by_pattern_and_all_but_head():
    model = _tiny()
    embeddings = sum(p.numel() for n, p in model.named_parameters() if n.startswith("backbone.embeddings."))
    counts = apply_transfer(model, TransferConfig(freeze=["backbone.embeddings.*"]))
    assert counts["frozen"] == embeddings and counts["trainable"] == model.num_params() - embeddings
    head_only = _tiny()
    counts = apply_transfer(head_only, TransferConfig(freeze="all_but_head"))
    assert counts["trainable"] == 32 * 3 + 3  # the head: Linear(32, 3)
    assert head_only.config.frozen == ["backbone"]  # recorded in the config: a reloaded model is frozen alike
    rebuilt = archlab.create("hf_classifier", **head_only.config.to_dict())
    assert sum(p.numel() for p in rebuilt.parameters() if p.requires_grad) == 32 * 3 + 3
    with pytest.raises(ConfigError, match="matches no parameter"):
        apply_transfer(_tiny(), TransferConfig(freeze=["encoder.nothing.*"]))


def test_head_lr_and_layer_decay_param_groups():
    model = _tiny()
    cfg = TrainConfig(lr=1e-3, transfer={"head_lr": 1e-2, "layer_decay": 0.5})
    opt = build_optimizer(model, cfg)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    # 2 layers: embeddings 0.5**3, layer 0 0.5**2, layer 1 0.5, the head its own lr
    assert lr_of[id(named["backbone.embeddings.word_embeddings.weight"])] == pytest.approx(1e-3 * 0.125)
    assert lr_of[id(named["backbone.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(1e-3 * 0.25)
    assert lr_of[id(named["backbone.encoder.layer.1.output.dense.bias"])] == pytest.approx(1e-3 * 0.5)
    assert lr_of[id(named["head.weight"])] == pytest.approx(1e-2)
    assert len(lr_of) == len(named)  # every trainable parameter in exactly one group


def test_lora_trainable_counts():
    model = _tiny()
    counts = apply_transfer(model, TransferConfig(lora={"r": 4, "target_modules": ["query", "value"]}))
    # 2 layers x (query, value): A (4 x 32) + B (32 x 4) each; plus the head Linear(32, 3)
    assert counts["trainable"] == 2 * 2 * (4 * 32 + 32 * 4) + 32 * 3 + 3
    assert counts["frozen"] == _tiny().num_params() - (32 * 3 + 3)
    assert model.config.lora.r == 4
    # a base built from hf_config is random, so even an adapter model saves it (nothing else holds it)
    assert "backbone.embeddings.word_embeddings.weight" in model.state_dict()
    with pytest.raises(ConfigError, match="match no Linear layer"):
        apply_transfer(_tiny(), TransferConfig(lora={"target_modules": ["qkv_proj"]}))
    with pytest.raises(ConfigError, match="LoRA support"):
        apply_transfer(archlab.create("mlp_tabular"), TransferConfig(lora={}))


def test_adapter_save_holds_only_trained_tensors_and_base_reference(tiny_dir, tmp_path):
    model = archlab.create("hf_classifier", source=tiny_dir, num_classes=3)
    model.add_lora({"r": 2, "target_modules": ["query", "value"]})
    _perturb_lora(model)
    model.eval()
    archlab.save(model, tmp_path / "adapter")
    with safe_open(str(tmp_path / "adapter" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k or k.startswith("head.") for k in keys)
    assert len(keys) == 2 * 2 * 2 + 2  # (A, B) x (query, value) x 2 layers + head weight, bias
    meta = json.loads((tmp_path / "adapter" / "config.json").read_text())
    assert meta["config"]["source"] == tiny_dir and meta["config"]["lora"]["r"] == 2  # the base reference
    loaded = archlab.load(tmp_path / "adapter").eval()
    x = model.example_input(2)
    with torch.no_grad():
        before = model(*x)
        assert torch.equal(loaded(*x), before)
        model.merge_lora()  # fold W += (alpha / r) B A in, for export
        assert torch.allclose(model(*x), before, atol=1e-5)
    assert model.config.lora is None and not any("lora_" in k for k in model.state_dict())
    assert all(p.requires_grad for p in model.parameters())


def test_hf_prediction_ignores_extra_padding():
    model = _tiny().eval()
    tokens = torch.randint(1, 128, (3, 12))
    padding = torch.zeros(3, 12, dtype=torch.bool)
    padding[1, 7:] = True
    tokens[padding] = 0
    longer = torch.cat([tokens, torch.zeros(3, 8, dtype=torch.long)], dim=1)
    long_pad = torch.cat([padding, torch.ones(3, 8, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(tokens, padding), model(longer, long_pad), atol=1e-5)


def test_minilm_package_loads_offline():
    from archlab.data.hf_text import load_tokenizer

    model = archlab.create("hf_classifier", source="all-minilm-l6-v2", num_classes=3).eval()
    assert model.config.hf_config["hidden_size"] == 384 and model.config.hf_config["num_hidden_layers"] == 6
    assert model.backbone.num_parameters() == 22_713_216 - 384 * 384 - 384  # all-MiniLM-L6-v2 less its pooler
    enc = load_tokenizer("all-minilm-l6-v2")(["To be, or not to be"], return_tensors="pt")
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"] == 0)
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_bad_sources_and_mismatched_tokens_raise(tmp_path):
    from archlab.data import load
    from archlab.runs.hf_model import resolve_hf_name

    with pytest.raises(ConfigError, match="found neither"):
        resolve_source("no-such-model-package")
    transformers.BertConfig(**TINY).save_pretrained(tmp_path)  # a config, no weights
    with pytest.raises(ConfigError, match="expected pretrained weights"):
        archlab.create("hf_classifier", source=str(tmp_path))
    assert archlab.create("hf_classifier", source=str(tmp_path), pretrained=False).config.hf_config["hidden_size"] == 16
    char = load("shakespeare_genre", max_per_play=1, max_len=16)
    with pytest.raises(ConfigError, match="tokenised by 'char'"):
        resolve_hf_name("hf:all-minilm-l6-v2", char, None, None)
    with pytest.raises(ConfigError, match="needs a source"):
        resolve_hf_name("hf:", "shakespeare_genre", None, None)


def test_missing_extras_name_the_extra(monkeypatch):
    import sys

    from archlab.data.hf_text import transformers_module
    from archlab.errors import MissingExtraError

    model = _tiny()
    monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"archlab\[peft\]"):
        model.add_lora({})
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtraError, match=r"archlab\[hf\]"):
        transformers_module()


def test_lora_run_resumes_from_its_adapter_checkpoint(tiny_dir, tmp_path):
    from archlab.runs import resume

    first = _fit_tiny(tiny_dir, tmp_path, transfer={"lora": {"r": 2}, "head_lr": 1e-2})
    with safe_open(str(first.run_dir / "last" / "model.safetensors"), "pt") as f:
        assert all("lora_" in k or k.startswith("head.") for k in f.keys())
    again = resume(first.run_dir)  # rebuilt from config.yaml, LoRA added again, the adapters restored
    x = first.model.example_input(2)
    with torch.no_grad():
        assert torch.equal(first.model.eval()(*x), again.model.eval()(*x))


def test_a_randomly_initialised_backbone_gets_positions_for_the_data_length():
    # text of 320 characters: the preset's 128 positions grow (the table is random anyway)
    model = archlab.create("hf_classifier", max_seq_len=320, vocab_size=81, num_classes=3)
    assert model(torch.randint(0, 81, (2, 320))).shape == (2, 3)
    assert model.config.hf_config["max_position_embeddings"] == 320
