"""The fastText-style bag-of-n-grams classifier: padding, word order through n-grams, errors, advice."""

from __future__ import annotations

import pytest
import torch

from archlab.errors import ShapeError
from archlab.registry import create


def _model(**overrides):
    torch.manual_seed(0)
    return create("fasttext_classifier", vocab_size=12, num_classes=2, **overrides)


def test_output_shape_and_padding_is_ignored():
    m = _model()
    torch.nn.init.normal_(m.head.weight)  # the head starts at zero; make the output depend on the bag
    tokens, padding = m.example_input(3)
    out = m(tokens, padding)
    assert out.shape == (3, 2)
    changed = tokens.clone()
    changed[padding] = 7  # whatever sits under the padding mask
    assert torch.allclose(m(changed, padding), out)
    # without the mask, the same ids do count
    assert not torch.allclose(m(changed), m(tokens))


def test_ngrams_see_order_unigrams_do_not():
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    shuffled = torch.tensor([[6, 4, 2, 5, 3, 1]])
    for ngrams, order_matters in ((1, False), (3, True)):
        m = _model(ngrams=ngrams)
        torch.nn.init.normal_(m.head.weight)
        assert torch.allclose(m(tokens), m(shuffled)) is not order_matters
    m = _model(ngrams=3)
    rows, kept = m.bag(tokens, torch.ones_like(tokens, dtype=torch.bool))
    assert rows.shape == kept.shape == (1, 6 + 5 + 4)  # tokens, bigrams, trigrams
    assert int(rows.max()) < m.embed.num_embeddings


def test_ngram_touching_padding_is_left_out():
    m = _model(ngrams=2)
    tokens = torch.tensor([[1, 2, 3, 0]])
    _, kept = m.bag(tokens, torch.tensor([[True, True, True, False]]))
    assert kept.tolist() == [[True, True, True, False, True, True, False]]


def test_bigrams_learn_what_a_bag_of_tokens_cannot():
    # class 1 when token 1 comes before token 2, class 0 when after: the same tokens in both classes
    g = torch.Generator().manual_seed(0)
    n = 256
    tokens = torch.randint(3, 12, (n, 8), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, 7, (n,), generator=g)
    first = torch.where(y == 1, 1, 2)
    tokens[torch.arange(n), pos] = first
    tokens[torch.arange(n), pos + 1] = 3 - first

    def accuracy(ngrams: int) -> float:
        m = _model(ngrams=ngrams, buckets=256)
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        for _ in range(150):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(tokens), y).backward()
            opt.step()
        return float((m(tokens).argmax(1) == y).float().mean())

    assert accuracy(2) == 1.0
    assert accuracy(1) < 0.8


def test_bad_inputs_name_what_was_expected():
    m = _model()
    with pytest.raises(ShapeError, match="fasttext_classifier|FastText"):
        m(torch.rand(2, 5))  # floats, not token ids
    with pytest.raises(ShapeError, match="\\[0, 12\\)|12"):
        m(torch.tensor([[1, 12]]))  # outside the vocabulary
    with pytest.raises(ShapeError, match="padding_mask"):
        m(torch.tensor([[1, 2]]), torch.tensor([[False]]))


def test_text_classification_advice_offers_the_bag_of_ngrams():
    from archlab.advise import recommend

    rec = recommend(modality="text", task="classification", seq_len=320, num_classes=3, n_samples=10_000, top=3)
    families = [c.family for c in rec.candidates]
    assert "fasttext" in families and families[0] == "transformer"


def test_the_design_starts_it_at_its_declared_rate_and_sweeps_the_others():
    from archlab.data.base import DataBundle, Split
    from archlab.runs.design_budget import starting_lr
    from archlab.tasks import get_task

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    bundle = DataBundle(name="toy", modality="tabular", task="classification", train=Split(inputs=(x,), target=y))
    task = get_task("classification")
    declared = starting_lr(_model(), bundle, task, batch_size=16)
    assert declared.lr == 0.1 and not declared.lrs and "declares" in declared.note
    swept = starting_lr(create("mlp_tabular", in_features=4, out_features=2), bundle, task, batch_size=16)
    assert swept.lrs and swept.lr <= 1e-2  # a range test ran, its suggestion under the deep-network cap
