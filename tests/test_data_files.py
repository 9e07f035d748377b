"""Users' files: each format written here in tmp_path, loaded back, and its bad-data cases."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import archlab.data as D
from archlab.errors import DataError


# ------------------------------------------------------------------------------------ CSV
def _write(path, text):
    path.write_text(text)
    return path


def test_a_free_text_column_is_said_to_be_one_category_per_value(tmp_path, caplog):
    rows = ["note,city,label"] + [
        f"entry {i} about thing {i * 7},{['paris', 'rome'][i % 2]},{i % 2}" for i in range(60)
    ]
    p = _write(tmp_path / "notes.csv", "\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="archlab.data"):
        D.load(p, target="label", seed=0)
    said = [r.getMessage() for r in caplog.records]
    assert any("'note' holds 60 distinct strings in 60 rows" in m for m in said)
    assert not any("'city'" in m for m in said)  # two values: an ordinary category


def test_csv_round_trip_with_categoricals(tmp_path):
    rows = ["age,city,rooms,price,label"]
    rng = np.random.default_rng(0)
    for i in range(60):
        rows.append(
            f"{20 + i},{['paris', 'rome', 'oslo'][i % 3]},{i % 4},{rng.normal():.4f},{'yes' if i % 2 else 'no'}"
        )
    p = _write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    b = D.load(p, target="label", seed=0)
    assert b.task == "classification" and b.modality == "tabular"
    assert b.info["class_names"] == ["no", "yes"] and b.info["num_classes"] == 2
    # text column and the 4-valued int column are categorical; 'age' (60 values) is numeric
    assert b.info["categorical"] == {"city": ["oslo", "paris", "rome"], "rooms": ["0", "1", "2", "3"]}
    assert b.info["feature_names"] == ["age", "city", "rooms", "price"]
    assert b.info["categorical_index"] == [1, 2]
    x = torch.cat([b.train.inputs[0], b.val.inputs[0], b.test.inputs[0]])
    assert x.shape == (60, 4) and set(x[:, 1].tolist()) == {0.0, 1.0, 2.0}  # ids, not standardised
    assert abs(float(b.train.inputs[0][:, 0].mean())) < 1e-5  # numeric: standardised on train
    # the override makes 'rooms' numeric, and one-hot expands 'city'
    o = D.load(p, target="label", categorical=["city"], one_hot=True)
    assert o.info["feature_names"] == ["age", "city=oslo", "city=paris", "city=rome", "rooms", "price"]
    # a float target with many values means regression
    r = D.load(p, target="price")
    assert r.task == "regression" and r.train.target.shape[1] == 1
    # ... whose target is standardised with train statistics by default, and kept raw when asked
    assert abs(float(r.train.target.mean())) < 1e-5 and "target_normalization" in r.info
    raw = D.load(p, target="price", normalize_target=False)
    assert "target_normalization" not in raw.info
    assert torch.allclose(r.denormalize_target(r.test.target), raw.test.target, atol=1e-5)


def test_csv_missing_value_named_or_dropped(tmp_path):
    p = _write(
        tmp_path / "m.csv", "a,b,y\n1,2,0\n3,,1\n5,6,0\n7,8,1\n9,10,0\n11,12,1\n13,14,0\n15,16,1\n17,18,0\n19,20,1\n"
    )
    with pytest.raises(DataError, match=r"column 'b'.*line 3"):
        D.load(p)
    b = D.load(p, dropna=True, val_fraction=0.0, test_fraction=0.0)
    assert b.info["dropped"] == 1 and len(b.train) == 9
    inf = _write(tmp_path / "inf.csv", "a,y\n1,0\ninf,1\n")
    with pytest.raises(DataError, match="column 'a'.*line 3"):
        D.load(inf)


def test_csv_ragged_empty_and_bad_target(tmp_path):
    with pytest.raises(DataError, match=r"line 3: 4 fields; the header has 3"):
        D.load(_write(tmp_path / "r.csv", "a,b,y\n1,2,0\n1,2,3,4\n"))
    with pytest.raises(DataError, match=r"line 3: 2 fields"):
        D.load(_write(tmp_path / "short.csv", "a,b,y\n1,2,0\n1,2\n"))
    with pytest.raises(DataError, match="empty"):
        D.load(_write(tmp_path / "e.csv", ""))
    with pytest.raises(DataError, match="no data rows"):
        D.load(_write(tmp_path / "h.csv", "a,b\n"))
    p = _write(tmp_path / "ok.csv", "a,city,y\n1,x,0\n2,y,1\n3,x,0\n4,y,1\n")
    with pytest.raises(DataError, match="'nope' not found"):
        D.load(p, target="nope")
    with pytest.raises(DataError, match="column 'city' is not numeric"):
        D.load(p, categorical=[])


# ---------------------------------------------------------------------------- image folder
def _png(path, size=(6, 5), color=0, mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_round_trip(tmp_path):
    for c, col in (("cat", 30), ("dog", 200)):
        for i in range(6):
            _png(tmp_path / "imgs" / c / f"{i}.png", color=col + i)
    b = D.load(tmp_path / "imgs", val_fraction=0.0, test_fraction=0.25, normalize=False)
    assert b.modality == "image" and b.info["class_names"] == ["cat", "dog"]
    assert b.train.inputs[0].shape[1:] == (1, 5, 6)  # (C, H, W) from a 6x5 (W x H) image
    x, y = b.train.inputs[0], b.train.target
    assert torch.allclose(x[y == 1].mean(), torch.tensor(0.8), atol=0.03)  # ~ (200..205) / 255
    rgb = D.load(tmp_path / "imgs", resize=(4, 4), mode="RGB")
    assert rgb.train.inputs[0].shape[1:] == (3, 4, 4)


def test_image_folder_bad_cases(tmp_path):
    _png(tmp_path / "a" / "x" / "0.png")
    (tmp_path / "a" / "empty").mkdir()
    with pytest.raises(DataError, match="class folder .*empty holds no images"):
        D.load(tmp_path / "a")
    _png(tmp_path / "b" / "x" / "0.png", size=(6, 5))
    _png(tmp_path / "b" / "y" / "0.png", size=(7, 7))
    with pytest.raises(DataError, match="differs.*resize"):
        D.load(tmp_path / "b")
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "x" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png: not a readable image"):
        D.load(tmp_path / "c")


# ------------------------------------------------------------------------------------ text
def test_text_file_char_and_byte(tmp_path):
    p = _write(tmp_path / "t.txt", "hello world, héllo\n" * 40)
    b = D.load(p, block_size=16)
    assert b.info["vocab"] == sorted(set("hello world, héllo\n")) and b.task == "language_modeling"
    assert torch.equal(b.train.inputs[0][:, 1:], b.train.target[:, :-1])
    by = D.load(p, level="byte", block_size=16)
    assert by.info["vocab_size"] == 256 and int(by.train.inputs[0].max()) > 127  # é is two bytes
    with pytest.raises(DataError, match="empty"):
        D.load(_write(tmp_path / "e.txt", ""))
    with pytest.raises(DataError, match="level must be"):
        D.load(p, level="word")
    with pytest.raises(DataError, match="block_size"):
        D.load(_write(tmp_path / "s.txt", "tiny"), block_size=64)


# ------------------------------------------------------------------------------- NPY / NPZ
def test_npz_and_npy_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2, 8)).astype(np.float32)
    y = np.arange(40) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:10], y_test=y[:10])
    b = D.load(tmp_path / "d.npz", val_fraction=0.25)
    assert b.modality == "time_series" and b.info["num_classes"] == 3
    assert len(b.test) == 10 and len(b.train) + len(b.val) == 40
    assert b.train.inputs[0].shape[1:] == (2, 8)
    np.save(tmp_path / "x.npy", rng.normal(size=(30, 5)))
    np.save(tmp_path / "y.npy", np.arange(30) % 2)
    nb = D.load(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    assert nb.modality == "tabular" and nb.train.target.dtype == torch.int64
    reg = D.load(tmp_path / "x.npy", labels=tmp_path / "x.npy", task="regression")
    assert reg.train.target.shape[1] == 5


def test_npz_bad_labels_and_values(tmp_path):
    x = np.ones((10, 3))
    np.savez(tmp_path / "f.npz", x=x, y=np.linspace(0, 1, 10))
    with pytest.raises(DataError, match="integer class ids"):
        D.load(tmp_path / "f.npz")
    np.savez(tmp_path / "n.npz", x=x, y=np.array([0, 1, -1, 0, 1, 0, 1, 0, 1, 0]))
    with pytest.raises(DataError, match="label -1 at row 2"):
        D.load(tmp_path / "n.npz")
    bad = x.copy()
    bad[4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad, y=np.zeros(10, int))
    with pytest.raises(DataError, match="NaN/inf.*row 4"):
        D.load(tmp_path / "nan.npz")
    np.savez(tmp_path / "len.npz", x=x, y=np.zeros(9, int))
    with pytest.raises(DataError, match="9 rows but the inputs have 10"):
        D.load(tmp_path / "len.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="without pickle"):
        D.load(tmp_path / "obj.npy")


# ------------------------------------------------------------------------------- MNIST IDX
def _idx(path, arr: np.ndarray, code: int = 0x08, gz=False):
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(">u1" if code == 0x08 else ">i4").tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_mnist_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(30, 7, 7), dtype=np.uint8)
    labs = (np.arange(30) % 10).astype(np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte", imgs)
    _idx(tmp_path / "train-labels-idx1-ubyte", labs)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs[:12], gz=True)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labs[:12], gz=True)
    one = D.load(tmp_path / "train-images-idx3-ubyte", normalize=False, val_fraction=0.0, test_fraction=0.0)
    assert one.train.inputs[0].shape == (30, 1, 7, 7)
    assert torch.allclose(one.train.inputs[0][:, 0] * 255, torch.from_numpy(imgs).float(), atol=1e-3)
    assert one.train.target.tolist() == labs.tolist() and one.info["num_classes"] == 10
    folder = D.load(tmp_path)
    assert len(folder.test) == 12 and len(folder.train) + len(folder.val) == 30


def test_mnist_idx_bad_files(tmp_path):
    imgs = np.zeros((5, 4, 4), dtype=np.uint8)
    _idx(tmp_path / "a-images-idx3-ubyte", imgs)
    raw = (tmp_path / "a-images-idx3-ubyte").read_bytes()
    (tmp_path / "a-images-idx3-ubyte").write_bytes(raw[:-3])
    _idx(tmp_path / "a-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="header says"):
        D.load(tmp_path / "a-images-idx3-ubyte")
    _idx(tmp_path / "b-images-idx3-ubyte", imgs)
    _idx(tmp_path / "b-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="expected 5 labels"):
        D.load(tmp_path / "b-images-idx3-ubyte")
    (tmp_path / "c-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(DataError, match="not an IDX file"):
        D.load(tmp_path / "c-images-idx3-ubyte", labels=tmp_path / "b-labels-idx1-ubyte")


# -------------------------------------------------------------------------------- CIFAR-10
def _cifar_batch(path, n, seed, protocol=2):
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"{i}.png".encode() for i in range(n)],
    }
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    return d


def test_cifar_batches_round_trip(tmp_path):
    d1 = _cifar_batch(tmp_path / "data_batch_1", 20, 0)
    _cifar_batch(tmp_path / "data_batch_2", 20, 1, protocol=5)
    _cifar_batch(tmp_path / "test_batch", 10, 2)
    names = [f"class{i}".encode() for i in range(10)]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    b = D.load(tmp_path, val_fraction=0.0)
    assert b.train.inputs[0].shape == (40, 3, 32, 32) and len(b.test) == 10
    assert b.info["class_names"][3] == "class3"
    single = D.load(tmp_path / "data_batch_1", normalize=False, val_fraction=0.0, test_fraction=0.0)
    expect = torch.from_numpy(d1[b"data"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.allclose(single.train.inputs[0], expect) and single.train.target.tolist() == d1[b"labels"]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_restricted_unpickler_refuses_globals(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refused to unpickle.*(posix|os)\\.system"):
        D.load(tmp_path / "data_batch_1")
    assert not marker.exists()
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": eval, b"labels": [0]}))
    with pytest.raises(DataError, match="builtins.eval is not allowed"):
        D.load(tmp_path / "data_batch_2", kind="cifar")
    obj = np.array([1, "a"], dtype=object)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": obj, b"labels": [0]}, protocol=2))
    with pytest.raises(DataError):
        D.load(tmp_path / "data_batch_3")
    d = _cifar_batch(tmp_path / "data_batch_4", 5, 0)
    d[b"labels"][2] = 300
    (tmp_path / "data_batch_4").write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DataError, match="label 300 at row 2"):
        D.load(tmp_path / "data_batch_4")


# ------------------------------------------------------------------------------ UCR .ts/.tsv
_TS_HEAD = (
    "#comment\n@problemName Toy\n@timeStamps false\n@univariate {u}\n@equalLength true\n@classLabel true a b c\n@data\n"
)


def test_ucr_ts_round_trip_with_test_sibling(tmp_path):
    lines = [f"{i},{i + 1},{i + 2},{i + 3}:{'abc'[i % 3]}" for i in range(12)]
    _write(tmp_path / "Toy_TRAIN.ts", _TS_HEAD.format(u="true") + "\n".join(lines))
    _write(tmp_path / "Toy_TEST.ts", _TS_HEAD.format(u="true") + "\n".join(lines[:6]))
    b = D.load(tmp_path / "Toy_TRAIN.ts", normalize=False, val_fraction=0.0)
    assert b.train.inputs[0].shape == (12, 1, 4) and len(b.test) == 6
    assert b.train.target.tolist() == [i % 3 for i in range(12)] and b.info["class_names"] == ["a", "b", "c"]
    assert b.train.inputs[0][5, 0].tolist() == [5, 6, 7, 8]
    multi = [f"{i},{i}:{-i},{-i}:{'ab'[i % 2]}" for i in range(8)]
    _write(tmp_path / "M.ts", _TS_HEAD.format(u="false") + "\n".join(multi))
    assert D.load(tmp_path / "M.ts").train.inputs[0].shape[1:] == (2, 2)


def test_ucr_bad_files(tmp_path):
    head = _TS_HEAD.format(u="true")
    _write(tmp_path / "u.ts", head + "1,2,3:a\n1,2:b\n")
    with pytest.raises(DataError, match="line 9.*length 2 differs"):
        D.load(tmp_path / "u.ts")
    _write(tmp_path / "l.ts", head + "1,2,3:a\n1,2,4:z\n")
    with pytest.raises(DataError, match="label 'z'.*not one of the declared"):
        D.load(tmp_path / "l.ts")
    _write(tmp_path / "q.ts", head + "1,2,3:a\n1,?,4:b\n")
    with pytest.raises(DataError, match="line 9.*missing"):
        D.load(tmp_path / "q.ts")
    _write(tmp_path / "r.tsv", "1\t0.1\t0.2\n2\t0.3\n")
    with pytest.raises(DataError, match="line 2: 2 fields.*ragged"):
        D.load(tmp_path / "r.tsv")
    rows = "\n".join(f"{i % 2 + 1}\t{i}\t{i * 2}\t{i * 3}" for i in range(10))
    ok = D.load(_write(tmp_path / "ok.tsv", rows))
    assert ok.info["class_names"] == ["1", "2"] and ok.train.inputs[0].shape[1:] == (1, 3)


# ------------------------------------------------------------------------------- edge lists
def test_edge_list_round_trip_and_errors(tmp_path):
    edges = "# comment\n10 11\n11 12\n12 10\n20 21\n21 22\n22 20\n12 20\n"
    p = _write(tmp_path / "g.edges", edges)
    lab = _write(tmp_path / "labels.txt", "\n".join(f"{n} {0 if n < 20 else 1}" for n in (10, 11, 12, 20, 21, 22)))
    b = D.load(p, labels=lab, val_fraction=0.0, test_fraction=0.34)
    assert b.task == "node_classification" and b.info["node_ids"] == [10, 11, 12, 20, 21, 22]
    x, ei = b.train.inputs
    assert x.shape == (6, 6) and ei.shape == (2, 14) and b.train.target.tolist() == [0, 0, 0, 1, 1, 1]
    t = D.load(_write(tmp_path / "g.txt", edges), kind="graph")
    assert t.task == "node_embedding" and t.train.target is None
    with pytest.raises(DataError, match="line 2: expected two integers"):
        D.load(_write(tmp_path / "bad.edgelist", "1 2\n1 2 3\n"))
    with pytest.raises(DataError, match="node 99 is not in the edge list"):
        D.load(p, labels=_write(tmp_path / "l2.txt", "99 0\n"))


# ---------------------------------------------------------------------------- dispatch etc
def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="cannot tell the format"):
        D.load(_write(tmp_path / "x.xyz", "1"))
    with pytest.raises(DataError, match="no such file"):
        D.load(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="does not take option"):
        D.load(_write(tmp_path / "t.txt", "abc" * 100), target="y")


def test_missing_optional_package_names_the_extra(monkeypatch):
    import importlib.util
    import sys

    from archlab.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"archlab\[data\]"):
        D.load("wine")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "sktime" else real(n, *a))
    with pytest.raises(MissingExtraError, match=r"sktime.*archlab\[data\]"):
        D.load("ucr:GunPoint")


def test_mnist1d_generation_needs_no_network(monkeypatch):
    import socket

    from archlab.data import timeseries

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    timeseries._mnist1d_arrays.cache_clear()
    b = D.load("mnist1d")
    assert len(b.test) == 1000
