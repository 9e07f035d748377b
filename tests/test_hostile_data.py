"""Hostile data files: crafted pickles that would hang a naive walker, binary garbage and
duplicate headers in CSV, object and empty arrays in NPY - each a DataError naming the file."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from archlab.data.files import load_array, load_csv
from archlab.errors import DataError

# -- CIFAR-style pickles ------------------------------------------------------------------------------

# Each payload is built and loaded in a child process with a hard timeout, so a regression to a
# walker without a visited set fails the test instead of hanging the suite.
_CHILD = textwrap.dedent(r"""
    import pickle, sys
    from archlab.data.safe_pickle import safe_load_pickle
    from archlab.errors import DataError
    kind, path = sys.argv[1], sys.argv[2]
    if kind == "cycle":
        a = [1, 2]
        a.append(a)  # a list that contains itself
        obj = {b"data": a}
    elif kind == "shared":
        node = [0]
        for _ in range(40):  # 40 objects, 2**40 paths through them
            node = [node, node]
        obj = {b"data": node}
    elif kind == "deep":
        node = []
        for _ in range(200):
            node = [node]
        obj = {b"data": node}
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    try:
        safe_load_pickle(path)
        print("LOADED")
    except DataError as exc:
        print("DATAERROR", exc)
""")


@pytest.mark.parametrize("kind,expect", [("cycle", "LOADED"), ("shared", "LOADED"), ("deep", "nested deeper")])
def test_crafted_pickles_do_not_hang(tmp_path, kind, expect):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(tmp_path / "data_batch_1")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout


def test_object_arrays_inside_a_cycle_are_still_found(tmp_path):
    from archlab.data.safe_pickle import safe_load_pickle

    a: list = [np.zeros(3)]
    a.append(a)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": a}, protocol=2))
    assert safe_load_pickle(path)[b"data"][1] is not None
    b: list = [np.array([1, "x"], dtype=object)]
    b.append(b)
    path.write_bytes(pickle.dumps({b"data": b}, protocol=2))
    with pytest.raises(DataError, match="holds an object array"):
        safe_load_pickle(path)


# -- CSV --------------------------------------------------------------------------------------------


def test_binary_garbage_csv_is_a_data_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b,y\n1,2,0\n" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"t\.csv, line \d+: not UTF-8"):
        load_csv(path)


def test_nul_bytes_in_csv_are_a_data_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b,y\n1,\x002,0\n")
    with pytest.raises(DataError, match=r"t\.csv.*line 2"):
        load_csv(path)


def test_duplicate_headers_are_refused_not_renamed(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,a,y\n" + "".join(f"{i},{i % 3},{i * 2},{i % 2}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"t\.csv, line 1: duplicate column names \['a'\]"):
        load_csv(path)


def test_blank_index_header_is_still_accepted(tmp_path):
    path = tmp_path / "t.csv"  # pandas' to_csv writes an unnamed index column
    path.write_text(",a,b,y\n" + "".join(f"{i},{i * 0.5},{i % 3},{i % 2}\n" for i in range(30)))
    assert load_csv(path).train.inputs[0].shape[1] == 3


# -- NPY ----------------------------------------------------------------------------------------------


def test_object_dtype_npy_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"x\.npy: cannot read without pickle"):
        load_array(path)


@pytest.mark.parametrize("shape", [(0, 4), (10, 0)])
def test_empty_arrays_are_refused(tmp_path, shape):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    with pytest.raises(DataError, match=r"x\.npy: array .* is empty"):
        load_array(path)
