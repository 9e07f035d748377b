"""Streamed data sources: token windows, memory-mapped .npy rows, lazily decoded image folders,
the token cache, and the stream / memory choice."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import archlab.data as D
from archlab.data.base import is_streamed
from archlab.data.files import load_array
from archlab.data.images import load_image_folder
from archlab.data.preprocess import Preprocessing
from archlab.data.streams import NpySource, TokenWindows, choose_streaming, stats_sample
from archlab.data.text import lm_windows, load_text_file
from archlab.data.token_cache import open_token_file, text_tokens
from archlab.errors import DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "cache"))


def _tokens(tmp_path, n=1_000, vocab=50, dtype=np.uint16, seed=0):
    ids = np.random.default_rng(seed).integers(0, vocab, size=n).astype(dtype)
    path = tmp_path / "tokens.npy"
    np.save(path, ids)
    return path, ids


# -- token windows --------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi", "block", "stride"), [(0, 1000, 8, 1), (100, 900, 16, 16), (7, 500, 5, 3)])
def test_token_windows_equal_lm_windows(tmp_path, lo, hi, block, stride):
    path, ids = _tokens(tmp_path)
    x_ref, y_ref = lm_windows(ids[lo:hi].astype(np.int64), block, stride)
    for source in (TokenWindows(path, lo, hi, block, stride), TokenWindows(ids, lo, hi, block, stride)):
        assert len(source) == len(x_ref)
        (x,), y = source.fetch(np.arange(len(source)))
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
        (x1,), y1 = source[len(source) - 1]
        assert torch.equal(x1, x_ref[-1]) and torch.equal(y1, y_ref[-1])


def test_raw_bin_tokens_read_with_their_dtype(tmp_path):
    _, ids = _tokens(tmp_path)
    path = tmp_path / "train.bin"
    ids.tofile(path)
    (x,), y = TokenWindows(path, 0, len(ids), 4, 4, dtype="uint16").fetch(np.array([0, 3]))
    assert x[1].tolist() == ids[12:16].tolist() and y[1].tolist() == ids[13:17].tolist()


def test_token_windows_refuse_indices_outside_the_split(tmp_path):
    path, _ = _tokens(tmp_path)
    source = TokenWindows(path, 0, 100, 8, 1)
    with pytest.raises(IndexError, match="92 is out of range for 92"):
        source.fetch(np.array([0, 92]))


def test_streamed_token_file_splits_and_covers_the_train_range(tmp_path):
    path, ids = _tokens(tmp_path, n=2_000)
    bundle = D.load(path, stream=True, block_size=16, val_fraction=0.1, test_fraction=0.1)
    train, val, test = bundle.train, bundle.val, bundle.test
    assert all(is_streamed(s) for s in (train, val, test))
    assert train.sampling == "random" and bundle.task == "language_modeling"
    # every offset of the first 80% is a train window: the first starts at token 0, the last
    # ends exactly at the boundary (its target's last token is token 1599)
    assert len(train) == 1600 - 16
    first, last = train.take(np.array([0])), train.take(np.array([len(train) - 1]))
    assert first.inputs[0][0].tolist() == ids[:16].tolist()
    assert last.target[0].tolist() == ids[1600 - 16 : 1600].tolist()
    # uniform draws over the split's indices reach both ends of the train range
    draws = torch.randint(len(train), (4_000,), generator=torch.Generator().manual_seed(0))
    starts = train.take(draws).inputs[0][:, 0]
    assert starts.numel() == 4_000 and draws.min() < 50 and draws.max() > len(train) - 50
    # val windows do not overlap and stay inside [1600, 1800)
    assert val.source.lo == 1600 and val.source.hi == 1800 and val.source.stride == 16
    v = val.take(slice(0, len(val)))
    assert torch.equal(v.inputs[0].reshape(-1), torch.from_numpy(ids[1600 : 1600 + 16 * len(val)].astype(np.int64)))
    assert 1600 + len(val) * 16 + 1 <= 1800 < 1600 + (len(val) + 1) * 16 + 1
    assert bundle.info["vocab_size"] == int(ids.max()) + 1 and bundle.info["seq_len"] == 16
    assert bundle.info["streaming"]["streamed"] is True and bundle.info["streaming"]["chosen_by"] == "option"


def test_in_memory_token_file_matches_lm_windows(tmp_path):
    path, ids = _tokens(tmp_path)
    bundle = D.load(path, stream=False, block_size=8, vocab_size=64)
    x, y = lm_windows(ids[:900].astype(np.int64), 8, 8)
    assert (
        not is_streamed(bundle.train) and torch.equal(bundle.train.inputs[0], x) and torch.equal(bundle.train.target, y)
    )
    assert bundle.info["vocab_size"] == 64 and "vocab" not in bundle.info


def test_shakespeare_streams_for_the_char_lm(tmp_path):
    bundle = D.load("shakespeare", stream=True, block_size=64, val_fraction=0.1, test_fraction=0.0)
    full = D.load("shakespeare", stream=False, block_size=64, val_fraction=0.1, test_fraction=0.0)
    info = bundle.info
    assert bundle.test is None and info["num_tokens"] == full.info["num_tokens"] > 4_000_000
    assert info["vocab"] == full.info["vocab"] and info["vocab_size"] == len(info["vocab"])
    assert info["block_size"] == info["seq_len"] == 64 and info["input_shape"] == [64] and info["level"] == "char"
    n = info["num_tokens"]
    assert len(bundle.train) == n - n // 10 - 64  # every offset of the first 90%
    # the val windows are the in-memory val windows (same stride, same tokens)
    v = bundle.val.take(slice(0, len(bundle.val)))
    assert len(bundle.val) == len(full.val) and torch.equal(v.inputs[0], full.val.inputs[0])


def test_auto_streams_only_above_the_threshold(tmp_path, monkeypatch, caplog):
    path, _ = _tokens(tmp_path, n=5_000)
    monkeypatch.setenv("ARCHLAB_STREAM_BYTES", "1000000")  # 1 MB
    small = D.load(path, block_size=8)  # windows need about 0.1 MB: in memory
    with caplog.at_level("INFO", logger="archlab.data"):
        big = D.load(path, block_size=8, stride=1)  # about 0.7 MB at stride 1: still under 1 MB
        monkeypatch.setenv("ARCHLAB_STREAM_BYTES", "100000")
        streamed = D.load(path, block_size=8, stride=1)
    assert not is_streamed(small.train) and not is_streamed(big.train) and is_streamed(streamed.train)
    record = streamed.info["streaming"]
    assert record["chosen_by"] == "auto" and record["threshold_bytes"] == 100_000
    assert record["in_memory_estimate_bytes"] > 100_000
    assert "streaming from disk (stream='auto'" in caplog.text
    shown = Preprocessing.from_bundle(streamed).choices["memory"]  # the data block of a run
    assert shown.startswith("streamed from disk (stream='auto'; in memory it would need about 1 MB")
    with pytest.raises(DataError, match="stream must be 'auto', True or False; got 'sometimes'"):
        choose_streaming("sometimes", 1, "x")


# -- the token cache ------------------------------------------------------------------------------


def test_text_file_streams_like_memory_and_reuses_its_cache(tmp_path, caplog):
    text = "".join(np.random.default_rng(1).choice(list("abcdé\nxyz "), size=3_000))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    for level in ("char", "byte"):
        mem = load_text_file(path, level=level, block_size=8, stream=False)
        with caplog.at_level("INFO", logger="archlab.data"):
            streamed = load_text_file(path, level=level, block_size=8, stride=8, stream=True)
        assert streamed.info["vocab"] == mem.info["vocab"] and streamed.info["num_tokens"] == mem.info["num_tokens"]
        got = streamed.train.take(slice(0, len(streamed.train)))
        assert torch.equal(got.inputs[0], mem.train.inputs[0]) and torch.equal(got.target, mem.train.target)
    cached = next((tmp_path / "cache" / "tokens").glob("*/tokens.npy"))
    stamp = cached.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level("INFO", logger="archlab.data"):
        load_text_file(path, block_size=8, stream=True)
    assert "reusing the token cache" in caplog.text and "encoding the text" not in caplog.text
    assert cached.stat().st_mtime_ns == stamp  # not written again


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_cache_is_rebuilt(tmp_path, damage, caplog):
    identity = {"test": "damage"}
    chunks = lambda: iter(["hello world\n" * 50])  # noqa: E731
    first = text_tokens(identity, chunks, "char", "text")
    reference = np.load(first.path).copy()
    if damage == "truncate":
        first.path.write_bytes(first.path.read_bytes()[:-10])
    elif damage == "flip":
        raw = bytearray(first.path.read_bytes())
        raw[-1] ^= 0xFF  # an id far outside the vocabulary
        first.path.write_bytes(bytes(raw))
    else:
        (first.path.parent / "meta.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="archlab.data"):
        again = text_tokens(identity, chunks, "char", "text")
    assert "is damaged" in caplog.text and not again.reused
    assert np.array_equal(np.load(again.path), reference)


def test_cache_stores_the_smallest_dtype(tmp_path):
    wide = "".join(chr(0x4E00 + i) for i in range(300))  # 300 symbols: more than a byte holds
    tokens = text_tokens({"test": "wide"}, lambda: iter([wide * 2]), "char", "text")
    assert tokens.dtype == np.uint16 and tokens.vocab_size == 300
    assert json.loads((tokens.path.parent / "meta.json").read_text())["dtype"] == "<u2"
    assert text_tokens({"test": "narrow"}, lambda: iter(["abc"]), "char", "text").dtype == np.uint8


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [
        (lambda p: np.save(p / "t.npy", np.zeros((4, 4), np.int64)), {}, r"1-D integer array; got shape \(4, 4\)"),
        (lambda p: np.save(p / "t.npy", np.zeros(10, np.float32)), {}, "1-D integer array; got shape .* float32"),
        (
            lambda p: np.save(p / "t.npy", np.arange(10)),
            {"vocab_size": 5},
            "token id 9 at position 5 is >= vocab_size 5",
        ),
        (lambda p: np.save(p / "t.npy", np.array([1, -2, 3])), {}, "token ids must be >= 0; found -2"),
        (lambda p: np.save(p / "t.npy", np.zeros(0, np.uint16)), {}, "holds no tokens"),
        (lambda p: (p / "t.bin").write_bytes(b"\x01\x00\x02"), {"vocab_size": 4}, "not a whole number of uint16"),
        (lambda p: (p / "t.bin").write_bytes(b"\x01\x00"), {}, "needs vocab="),
        (lambda p: (p / "t.npy").write_bytes(b"not numpy"), {}, "not a readable .npy"),
    ],
)
def test_bad_token_files_are_one_line_data_errors(tmp_path, make, options, message):
    make(tmp_path)
    path = next(tmp_path.glob("t.*"))
    with pytest.raises(DataError, match=message) as info:
        open_token_file(path, **options)
    assert "\n" not in str(info.value)


def test_truncated_token_npy_is_refused(tmp_path):
    path, _ = _tokens(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        open_token_file(path)


def test_empty_text_is_refused(tmp_path):
    with pytest.raises(DataError, match="text is empty"):
        text_tokens({"test": "empty"}, lambda: iter([]), "char", "text")


# -- .npy rows and image folders ------------------------------------------------------------------


def _same_splits(streamed, memory):
    for key, split in memory.splits().items():
        got = streamed.splits()[key].take(np.arange(len(split)))
        assert torch.equal(got.inputs[0], split.inputs[0]), key
        assert torch.equal(got.target, split.target), key


def test_npy_source_equals_the_in_memory_loader(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(60, 2, 5)).astype(np.float32) * 3 + 1)
    np.save(tmp_path / "y.npy", np.arange(60) % 3)
    mem = load_array(tmp_path / "x.npy", labels=tmp_path / "y.npy", stream=False)
    streamed = load_array(tmp_path / "x.npy", labels=tmp_path / "y.npy", stream=True)
    assert is_streamed(streamed.train) and streamed.train.sampling == "epoch"
    _same_splits(streamed, mem)
    stats = streamed.info.pop("normalization")
    assert stats["sample_size"] == stats["train_size"] == len(mem.train)
    assert {k: stats[k] for k in ("mean", "std", "over")} == mem.info.pop("normalization")
    assert torch.equal(streamed.train.target, mem.train.target)  # labels held for the task
    for info in (streamed.info, mem.info):
        info.pop("streaming")
    assert streamed.info == mem.info


def test_npy_stream_checks_values_like_the_in_memory_loader(tmp_path):
    x = np.ones((20, 3))
    x[7, 1] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="holds 1 NaN/inf values; the first in row 7"):
        load_array(tmp_path / "x.npy", stream=True)
    np.savez(tmp_path / "x.npz", x=np.ones((20, 3)))
    with pytest.raises(DataError, match="only .npy files can be streamed"):
        load_array(tmp_path / "x.npz", stream=True)


def test_statistics_sample_is_bounded_and_seeded():
    rows = np.arange(10_000)
    a, b = stats_sample(rows, seed=3), stats_sample(rows, seed=3)
    assert len(a) == 1024 and np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, stats_sample(rows, seed=4))
    assert np.array_equal(stats_sample(rows[:100], seed=3), rows[:100])


def _image_folder(root, sizes=None):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            w, h = (6, 5) if sizes is None else sizes[i % len(sizes)]
            Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("resize", [None, (4, 3)])
def test_image_folder_source_equals_the_in_memory_loader(tmp_path, resize):
    root = _image_folder(tmp_path / "imgs", sizes=None if resize is None else [(6, 5), (7, 4)])
    mem = load_image_folder(root, resize=resize, stream=False)
    streamed = load_image_folder(root, resize=resize, stream=True, workers=1)
    assert streamed.train.workers == 1 and streamed.info["image_size"] == mem.info["image_size"]
    _same_splits(streamed, mem)
    assert streamed.info["normalization"]["mean"] == mem.info["normalization"]["mean"]
    assert streamed.info["class_names"] == ["cat", "dog"] and streamed.info["mode"] == "RGB"


def test_image_folder_stream_refuses_mixed_sizes_without_resize(tmp_path):
    root = _image_folder(tmp_path / "imgs", sizes=[(6, 5), (7, 4)])
    with pytest.raises(DataError, match="differs from .* pass resize"):
        load_image_folder(root, stream=True)


def test_a_pickled_source_reads_in_a_dataloader_worker(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(40, dtype=np.float32).reshape(20, 2))
    source = NpySource(tmp_path / "x.npy", np.arange(5, 15), None, None)
    source.fetch(np.array([0]))  # maps the file in this process: the copy must not carry the map
    state = pickle.loads(pickle.dumps(source)).__dict__
    assert state["_array"] is None and len(pickle.dumps(source)) < 2_000
    token_path, _ = _tokens(tmp_path)
    windows = TokenWindows(token_path, 0, 1000, 8, 1)
    loader = torch.utils.data.DataLoader(windows, batch_size=4, num_workers=1, sampler=[3, 9, 100, 500])
    ((x,), y) = next(iter(loader))
    (x_ref,), y_ref = windows.fetch(np.array([3, 9, 100, 500]))
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    rows = next(iter(torch.utils.data.DataLoader(source, batch_size=3, num_workers=1, collate_fn=lambda s: s)))
    assert [r[0][0].tolist() for r in rows] == [[10.0, 11.0], [12.0, 13.0], [14.0, 15.0]]


def test_bin_token_file_with_a_vocabulary_file(tmp_path):
    ids = np.array([0, 1, 2, 1, 0, 2] * 20, dtype=np.uint16)
    ids.tofile(tmp_path / "train.bin")
    (tmp_path / "vocab.json").write_text(json.dumps(["a", "b", "c"]))
    bundle = D.load(tmp_path / "train.bin", vocab=str(tmp_path / "vocab.json"), block_size=4, stream=True)
    assert bundle.info["vocab"] == ["a", "b", "c"] and bundle.info["vocab_size"] == 3
    assert bundle.train.take(np.array([1])).inputs[0][0].tolist() == [1, 2, 1, 0]
    with pytest.raises(DataError, match="vocab_size=5 but the vocab lists 3 symbols"):
        D.load(tmp_path / "train.bin", vocab=["a", "b", "c"], vocab_size=5)


def test_image_folder_source_reads_in_a_dataloader_worker(tmp_path):
    bundle = load_image_folder(_image_folder(tmp_path / "imgs"), stream=True, workers=1)
    source = pickle.loads(pickle.dumps(bundle.train.source))
    loader = torch.utils.data.DataLoader(source, batch_size=5, num_workers=1, sampler=[4, 0, 2, 1, 3])
    (x,), y = next(iter(loader))
    expected = bundle.train.take(np.array([4, 0, 2, 1, 3]))
    assert torch.equal(x, expected.inputs[0]) and torch.equal(y, expected.target)


@pytest.mark.parametrize("axes", [(0,), (0, 2, 3)])
def test_chunked_statistics_match_the_one_pass_statistics(tmp_path, monkeypatch, axes):
    from archlab.data import streams
    from archlab.data.splits import fit_standardizer

    x = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 3, 4, 5))
    x[:, 1] = 7.0  # a constant channel: std 1, as fit_standardizer sets it
    np.save(tmp_path / "x.npy", x)
    source = NpySource(tmp_path / "x.npy", np.arange(50), None, None)
    monkeypatch.setattr(streams, "STATS_BYTES", 7 * x[0].nbytes)  # 8 chunks of at most 7 rows
    mean, std = streams.sample_statistics(source, axes)
    ref_mean, ref_std = fit_standardizer(x, axes)
    assert mean.shape == ref_mean.shape and np.allclose(mean, ref_mean, rtol=1e-12)
    assert np.allclose(std, ref_std, rtol=1e-10)
