"""Transformer family (encoder, decoder, encoder-decoder) and ViT: behaviour beyond the contract."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.layers.embeddings import RotaryEmbedding, apply_rotary

POSITIONS = ["learned", "sinusoidal", "rotary"]
SMALL = dict(d_model=32, n_heads=4, n_layers=2, d_ff=64)


def _gpt(pos="learned", **kw):
    cfg = dict(SMALL, vocab_size=50, max_seq_len=32, pos=pos, dropout=0.0)
    cfg.update(kw)
    return archlab.create("gpt_nano", **cfg).eval()


def _seq2seq(pos="learned", **kw):
    cfg = dict(SMALL, n_decoder_layers=2, vocab_size=40, max_seq_len=24, pos=pos, dropout=0.0)
    cfg.update(kw)
    return archlab.create("t5_small", **cfg).eval()


# -- causality ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pos", POSITIONS)
def test_decoder_future_token_never_changes_earlier_logits(pos):
    model = _gpt(pos)
    tokens = torch.randint(0, 50, (2, 12))
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 50
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # the change is visible from position 7 on


@pytest.mark.parametrize("norm_first", [True, False])
def test_seq2seq_decoder_is_causal_and_sees_the_whole_source(norm_first):
    model = _seq2seq(norm_first=norm_first)
    src, tgt = torch.randint(0, 40, (2, 10)), torch.randint(0, 40, (2, 9))
    tgt2 = tgt.clone()
    tgt2[:, 5] = (tgt2[:, 5] + 1) % 40
    src2 = src.clone()
    src2[:, -1] = (src2[:, -1] + 1) % 40
    with torch.no_grad():
        base, later, other_src = model(src, tgt), model(src, tgt2), model(src2, tgt)
    assert torch.equal(base[:, :5], later[:, :5])
    assert not torch.allclose(base[:, 5:], later[:, 5:])
    # cross-attention is not causal: the last source token reaches the first target position
    assert not torch.allclose(base[:, 0], other_src[:, 0])


# -- generation with and without the KV cache ----------------------------------------------------


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0, top_k=1)])
def test_generate_with_cache_equals_without(pos, sampling):
    model = _gpt(pos)
    prompt = torch.randint(0, 50, (2, 5))
    # 5 + 40 > max_seq_len=32: also covers cropping the context and rebuilding the cache
    ids_c, logits_c = model.generate(prompt, 40, use_cache=True, return_logits=True, **sampling)
    ids_n, logits_n = model.generate(prompt, 40, use_cache=False, return_logits=True, **sampling)
    assert ids_c.shape == (2, 45)
    assert torch.equal(ids_c, ids_n)
    torch.testing.assert_close(logits_c, logits_n, atol=1e-5, rtol=1e-5)
    assert torch.equal(ids_c[:, :5], prompt)


def test_cached_forward_matches_full_forward_token_by_token():
    model = _gpt("rotary")
    tokens = torch.randint(0, 50, (3, 10))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache()
        parts = [model(tokens[:, :4], cache)] + [model(tokens[:, t : t + 1], cache) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 10


def test_seq2seq_generate_with_cache_equals_without():
    model = _seq2seq("rotary")
    src = torch.randint(0, 40, (2, 7))
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    a, la = model.generate(src, 10, start_id=1, temperature=0.0, src_padding_mask=pad, return_logits=True)
    b, lb = model.generate(
        src, 10, start_id=1, temperature=0.0, src_padding_mask=pad, use_cache=False, return_logits=True
    )
    assert torch.equal(a, b) and a.shape == (2, 11) and bool((a[:, 0] == 1).all())
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_with_a_generator():
    model = _gpt()
    prompt = torch.randint(0, 50, (1, 3))
    runs = [
        model.generate(prompt, 8, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


# -- padding masks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,pool",
    [("bert_tiny", "none"), ("bert_tiny", "mean"), ("bert_tiny", "cls"), ("transformer_encoder_512", "none")],
)
def test_padded_token_ids_do_not_change_unpadded_outputs(name, pool):
    model = archlab.create(name, pool=pool, vocab_size=100, d_model=32, n_heads=4, n_layers=2, d_ff=64).eval()
    tokens = torch.randint(0, 100, (2, 10))
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[0, 6:] = True
    pad[1, 9:] = True
    other = tokens.clone()
    other[pad] = (other[pad] + 17) % 100
    with torch.no_grad():
        a, b = model(tokens, pad), model(other, pad)
        unmasked = model(other)
    if pool == "none":
        torch.testing.assert_close(a[~pad], b[~pad], atol=1e-6, rtol=0)
        assert not torch.allclose(a[~pad], unmasked[~pad])  # without the mask padding leaks in
    else:
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        assert not torch.allclose(a, unmasked)


def test_seq2seq_left_padded_target_stays_finite_and_ignores_pad_ids():
    model = _seq2seq()
    src, tgt = torch.randint(0, 40, (2, 6)), torch.randint(0, 40, (2, 7))
    tgt_pad = torch.zeros(2, 7, dtype=torch.bool)
    tgt_pad[0, :3] = True  # left padding: the first queries see no unpadded key but themselves
    other = tgt.clone()
    other[tgt_pad] = (other[tgt_pad] + 5) % 40
    with torch.no_grad():
        a = model(src, tgt, tgt_padding_mask=tgt_pad)
        b = model(src, other, tgt_padding_mask=tgt_pad)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a[~tgt_pad], b[~tgt_pad], atol=1e-6, rtol=0)


def test_all_padding_row_is_rejected():
    model = archlab.create("transformer_tagger").eval()
    tokens = torch.randint(0, 1000, (2, 6))
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1] = True
    with pytest.raises(ShapeError, match="at least one token"):
        model(tokens, pad)


def test_padding_mask_shape_is_checked():
    model = archlab.create("transformer_tagger").eval()
    tokens = torch.randint(0, 1000, (2, 6))
    with pytest.raises(ShapeError, match="padding_mask"):
        model(tokens, torch.zeros(2, 5, dtype=torch.bool))


# -- positions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pos", ["sinusoidal", "rotary", "none"])
def test_position_kinds_run_and_add_no_parameters(pos):
    learned = _gpt("learned")
    model = _gpt(pos)
    out = model(torch.randint(0, 50, (2, 9)))
    assert out.shape == (2, 9, 50) and torch.isfinite(out).all()
    assert learned.num_params() - model.num_params() == 32 * 32  # the max_seq_len x d_model table


def test_rotary_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(head_dim=8, max_len=64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        cq, sq = rope(1, m)
        ck, sk = rope(1, n)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(3, 1), score(40, 38))
    assert not torch.allclose(score(3, 1), score(3, 2))


# -- input checks -------------------------------------------------------------------------------


def test_decoder_checks_vocab_and_length():
    model = _gpt()
    with pytest.raises(ShapeError, match=r"ids in \[0, 50\); got values in \[0, 50\]"):
        model(torch.tensor([[0, 50]]))
    with pytest.raises(ShapeError, match="<= 32; got 33"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ShapeError, match="long"):
        model(torch.zeros(1, 4))


def test_vit_wrong_image_size_raises_shape_error():
    model = archlab.create("vit_tiny", n_layers=1).eval()
    with pytest.raises(ShapeError, match=r"vit_tiny expects x \(B, 3, 32, 32\) float; got \(2, 3, 28, 32\)"):
        model(torch.randn(2, 3, 28, 32))
    with pytest.raises(ShapeError, match="dimension C"):
        model(torch.randn(2, 1, 32, 32))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_image_size_must_be_divisible_by_patch():
    with pytest.raises(ConfigError, match="image_size=30 is not divisible by patch_size=4"):
        archlab.create("vit_tiny", image_size=30)


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_nano", "t5_small", "vit_tiny"])
def test_heads_must_divide_width(name):
    with pytest.raises(ConfigError, match="d_model=100 is not divisible by n_heads=8"):
        archlab.create(name, d_model=100, n_heads=8)


def test_rotary_needs_even_head_size():
    with pytest.raises(ConfigError, match="even head size"):
        archlab.create("gpt_nano", d_model=18, n_heads=6, pos="rotary")


# -- parameter counts (meta device: no memory) --------------------------------------------------


def _count(model, skip_prefix: str | None = None) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not (skip_prefix and n.startswith(skip_prefix)))


def test_gpt2_small_has_124m_parameters():
    model = archlab.create("gpt2_small", device="meta")
    assert _count(model) == 124_439_808  # tied lm_head counted once, as in GPT-2
    assert model.lm_head.weight is model.embed.tok.weight


def test_t5_small_uses_rmsnorm_and_its_count_drops_by_the_norm_shifts():
    # T5's RMSNorm has a scale and no shift: 32 norms (6 x 2 + 1 encoder, 6 x 3 + 1 decoder) of
    # width 512 lose their bias, 16,384 parameters fewer than the LayerNorm version.
    model = archlab.create("t5_small", device="meta")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.RMSNorm)]
    assert len(norms) == 32 and not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert model.num_params() == _count(model) == 61_097_984
    layernorm = archlab.create("t5_small", device="meta", norm="layernorm")
    assert layernorm.num_params() - model.num_params() == 32 * 512


def test_every_model_answers_num_params():
    for name in archlab.list_models():
        model = archlab.create(name, device="meta")
        assert model.num_params() == _count(model), name
        assert not hasattr(model, "get_num_params"), name
    vit = archlab.create("vit_tiny", device="meta")
    assert vit.num_params() - vit.num_params(non_embedding=True) == vit.pos_embed.numel()


def test_bert_backbones_match_hugging_face_bertmodel():
    # Hugging Face BertModel (embeddings + encoder + pooler), i.e. without the task head:
    # bert-base-uncased 109,482,240; google/bert_uncased_L-2_H-128_A-2 4,385,920.
    assert _count(archlab.create("bert_base", device="meta"), "head.") == 109_482_240
    assert _count(archlab.create("bert_tiny", device="meta"), "head.") == 4_385_920


def test_vit_b16_and_seed004_counts():
    assert _count(archlab.create("vit_b16", device="meta")) == 86_567_656  # timm vit_base_patch16_224
    # seed 004: embedding 1000x256 + 3 x (MHA 263,168 + 2 LayerNorms 1,024 + FFN 262,912) + fc 2,570
    assert _count(archlab.create("transformer_encoder_256")) == 1_839_882


def test_gpt_nano_matches_nanogpt_shakespeare_char():
    model = archlab.create("gpt_nano", device="meta")
    # nanoGPT prints "number of parameters: 10.65M" (bias=False, position table left out)
    assert round(model.num_params(non_embedding=True) / 1e6, 2) == 10.65
    assert model.num_params() - model.num_params(non_embedding=True) == 256 * 384


def test_token_types_need_segment_embeddings():
    model = archlab.create("transformer_tagger").eval()
    tokens = torch.randint(0, 1000, (2, 6))
    with pytest.raises(ShapeError, match="type_vocab_size=0"):
        model(tokens, None, torch.zeros(2, 6, dtype=torch.long))
    bert = archlab.create("bert_tiny", vocab_size=100).eval()
    types = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with torch.no_grad():
        assert not torch.allclose(bert(tokens % 100, None, types), bert(tokens % 100))
    with pytest.raises(ShapeError, match=r"token_types ids in \[0, 2\)"):
        bert(tokens % 100, None, types + 1)


def test_gpt_residual_projections_are_scaled():
    model = archlab.create("gpt_nano")
    std = 0.02 / math.sqrt(2 * 6)
    w = model.stack.blocks[0].attn.proj.weight
    assert abs(w.std().item() - std) < 0.05 * std
    assert abs(model.stack.blocks[0].mlp.fc1.weight.std().item() - 0.02) < 0.05 * 0.02


def test_tied_weights_survive_save_and_load(tmp_path):
    model = _gpt()
    archlab.save(model, tmp_path / "gpt")
    loaded = archlab.load(tmp_path / "gpt")
    assert loaded.lm_head.weight is loaded.embed.tok.weight
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
