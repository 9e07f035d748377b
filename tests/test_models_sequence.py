"""RNN and TCN families: packing, streaming, generation, causality and receptive field."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.errors import ConfigError, ShapeError

CELLS = ["rnn", "lstm", "gru"]


def _rnn(**kw):
    base = dict(input_size=3, hidden_size=8, n_layers=2, seq_len=7, out_features=4)
    return archlab.create("lstm_net", **{**base, **kw}).eval()


# -- RNN: variable lengths ----------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("head,pooling", [("tagger", "last"), ("classifier", "last"), ("classifier", "mean")])
def test_packed_batch_equals_each_sequence_alone(cell, bidirectional, head, pooling):
    model = _rnn(cell=cell, bidirectional=bidirectional, head=head, pooling=pooling)
    lengths = torch.tensor([7, 3, 5, 1])
    x = torch.randn(4, 7, 3)
    x[1, 3:] = 100.0  # padding content must not matter
    with torch.no_grad():
        batched = model(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = model(x[i : i + 1, :n])
            if head == "tagger":
                torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-6, rtol=0)
            else:
                torch.testing.assert_close(batched[i], alone[0], atol=1e-6, rtol=0)


def test_lengths_are_checked():
    model = _rnn()
    x = torch.randn(2, 7, 3)
    with pytest.raises(ShapeError, match="lengths"):
        model(x, torch.tensor([8, 3]))
    with pytest.raises(ShapeError, match="lengths"):
        model(x, torch.tensor([0, 3]))
    with pytest.raises(ShapeError, match="lengths"):
        model(x, torch.tensor([3, 3, 3]))


def test_wrong_feature_size_and_token_range_raise():
    with pytest.raises(ShapeError, match="lstm_net"):
        _rnn()(torch.randn(2, 7, 5))
    lm = archlab.create("lstm_char_lm", hidden_size=16, embed_dim=8).eval()
    with pytest.raises(ShapeError, match=r"\[0, 65\)"):
        lm(torch.tensor([[1, 65]]))
    with pytest.raises(ShapeError):
        lm(torch.randn(1, 4))  # floats where ids are expected


def test_lm_cannot_be_bidirectional():
    with pytest.raises(ConfigError, match="bidirectional"):
        archlab.create("lstm_char_lm", bidirectional=True)


# -- RNN: streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("head", ["tagger", "classifier", "forecaster"])
def test_two_chunks_with_carried_state_equal_one_pass(cell, head):
    model = _rnn(cell=cell, head=head, horizon=3)
    x = torch.randn(2, 9, 3)
    with torch.no_grad():
        full, full_state = model.forward_with_state(x)
        a, state = model.forward_with_state(x[:, :4])
        b, state = model.forward_with_state(x[:, 4:], state)
    if head == "tagger":
        torch.testing.assert_close(torch.cat([a, b], dim=1), full, atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(b, full, atol=1e-6, rtol=0)
        assert not torch.allclose(a, full)  # the first chunk alone really differs
    for s, f in zip(
        state if isinstance(state, tuple) else (state,), full_state if isinstance(full_state, tuple) else (full_state,)
    ):
        torch.testing.assert_close(s, f, atol=1e-6, rtol=0)


def test_step_by_step_lm_equals_full_pass():
    lm = archlab.create("lstm_char_lm", hidden_size=16, embed_dim=8).eval()
    ids = torch.randint(0, 65, (2, 6))
    with torch.no_grad():
        full = lm(ids)
        state, outs = None, []
        for t in range(ids.shape[1]):
            out, state = lm.step(ids[:, t], state)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs, dim=1), full, atol=1e-6, rtol=0)


def test_streaming_rejects_bidirectional_and_bad_state():
    model = _rnn(bidirectional=True, head="tagger")
    with pytest.raises(ConfigError, match="bidirectional"):
        model.forward_with_state(torch.randn(1, 3, 3), (torch.zeros(4, 1, 8), torch.zeros(4, 1, 8)))
    uni = _rnn(head="tagger")
    with pytest.raises(ShapeError, match="state"):
        uni.forward_with_state(torch.randn(1, 3, 3), torch.zeros(2, 1, 8))  # LSTM needs (h, c)


# -- RNN: generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm_char_lm", "rnn_char_lm"])
def test_generate_length_and_valid_ids(name):
    lm = archlab.create(name, hidden_size=16, embed_dim=8).eval()
    prompt = torch.randint(0, 65, (3, 4))
    gen = torch.Generator().manual_seed(1)
    out = lm.generate(prompt, max_new_tokens=20, temperature=1.5, generator=gen)
    assert out.shape == (3, 24) and out.dtype == torch.long
    assert torch.equal(out[:, :4], prompt)
    assert int(out.min()) >= 0 and int(out.max()) < 65


def test_greedy_generation_is_argmax_of_full_forward():
    lm = archlab.create("lstm_char_lm", hidden_size=16, embed_dim=8).eval()
    prompt = torch.randint(0, 65, (2, 3))
    out = lm.generate(prompt, max_new_tokens=6, temperature=0)
    with torch.no_grad():
        logits = lm(out[:, :-1])  # (B, T-1, V): position t predicts token t+1
    assert torch.equal(logits[:, 2:].argmax(-1), out[:, 3:])
    assert torch.equal(lm.generate(prompt, 6, temperature=1.0, top_k=1), out)


def test_top_k_samples_only_among_top_k():
    lm = archlab.create("lstm_char_lm", hidden_size=16, embed_dim=8).eval()
    prompt = torch.randint(0, 65, (4, 3))
    out = lm.generate(prompt, 15, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = lm(out[:, :-1])[:, 2:]  # logits each new token was drawn from
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == out[:, 3:].unsqueeze(-1)).any(-1).all()


def test_generate_needs_lm_head():
    with pytest.raises(ConfigError, match="lm"):
        _rnn().generate(torch.zeros(1, 2, dtype=torch.long), 3)


# -- RNN: init and heads --------------------------------------------------------------------------


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_orthogonal_recurrent_init(cell, gates):
    model = _rnn(cell=cell, init="orthogonal")
    w = model.rnn.weight_hh_l0.detach()
    assert w.shape == (gates * 8, 8)
    for k in range(gates):
        block = w[k * 8 : (k + 1) * 8]
        torch.testing.assert_close(block @ block.T, torch.eye(8), atol=1e-5, rtol=0)


def test_head_shapes():
    assert _rnn(head="forecaster", horizon=5)(torch.randn(2, 7, 3)).shape == (2, 5)
    assert _rnn(head="tagger", bidirectional=True)(torch.randn(2, 7, 3)).shape == (2, 7, 4)
    sine = archlab.create("lstm_sine_forecaster").eval()
    assert sine(torch.randn(4, 50, 1)).shape == (4, 1)
    gru = archlab.create("gru_mnist1d").eval()
    assert gru(torch.randn(4, 40, 1)).shape == (4, 10)
    tagger = archlab.create("bilstm_tagger").eval()
    assert tagger(torch.randint(0, 1000, (2, 11)), torch.tensor([11, 4])).shape == (2, 11, 9)


# -- TCN ----------------------------------------------------------------------------------------


def _tcn(**kw):
    base = dict(
        head="sequence", in_features=2, channels=[8, 8, 8], kernel_size=3, out_features=3, dropout=0.0, seq_len=40
    )
    return archlab.create("tcn_tiny", **{**base, **kw}).eval()


@pytest.mark.parametrize("weight_norm", [False, True])
def test_tcn_is_causal(weight_norm):
    model = _tcn(weight_norm=weight_norm)
    x = torch.randn(2, 40, 2)
    with torch.no_grad():
        base = model(x)
        for t in [0, 5, 17, 38]:
            x2 = x.clone()
            x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 10
            out = model(x2)
            assert torch.equal(out[:, : t + 1], base[:, : t + 1]), f"output at <= {t} changed"
            assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :])


@pytest.mark.parametrize("kernel_size,levels", [(2, 3), (3, 3), (3, 4), (5, 2)])
def test_receptive_field_formula_and_empirical(kernel_size, levels):
    model = _tcn(kernel_size=kernel_size, channels=[8] * levels, seq_len=64)
    rf = model.receptive_field
    assert rf == 1 + 2 * (kernel_size - 1) * sum(2**i for i in range(levels))
    length = rf + 10
    t = length - 1
    x = torch.randn(1, length, 2)
    with torch.no_grad():
        base = model(x)[0, t]
        # the earliest input step that reaches output t is t - rf + 1; one step earlier does not
        inside, outside = x.clone(), x.clone()
        inside[0, t - rf + 1] += 5.0
        outside[0, : t - rf + 1] += 5.0
        assert not torch.allclose(model(inside)[0, t], base)
        assert torch.equal(model(outside)[0, t], base)


def test_non_causal_tcn_sees_the_future_within_its_field():
    model = _tcn(causal=False)
    x = torch.randn(1, 40, 2)
    with torch.no_grad():
        base = model(x)
        x2 = x.clone()
        x2[0, 21] += 5.0
        assert not torch.allclose(model(x2)[0, 20], base[0, 20])


def test_tcn_heads_and_weight_norm():
    fc = archlab.create("tcn_forecaster").eval()
    assert fc(torch.randn(3, 64, 1)).shape == (3, 12)
    assert fc.receptive_field == 61  # 1 + 2*(3-1)*(1+2+4+8)
    assert hasattr(fc.blocks[0].conv1, "parametrizations")
    cls = archlab.create("tcn_classifier", pooling="mean").eval()
    assert cls(torch.randn(3, 40, 1)).shape == (3, 10)
    assert not hasattr(_tcn(weight_norm=False).blocks[0].conv1, "parametrizations")
    with pytest.raises(ShapeError, match="tcn_forecaster"):
        fc(torch.randn(3, 1, 64, 2))
