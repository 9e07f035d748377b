"""A restricted unpickler for CIFAR-10 python batches.

CIFAR-10's "python version" is a set of pickles. ``pickle.load`` on a file runs whatever the file
asks for (``os.system`` included), so archlab never calls it on user files. This unpickler
resolves only the handful of numpy globals an array needs and refuses every other global::

    numpy.core.multiarray._reconstruct / numpy._core.multiarray._reconstruct  (ndarray rebuild)
    numpy.ndarray, numpy.dtype                                                (its type, dtype)
    numpy.core.numeric._frombuffer / numpy._core.numeric._frombuffer          (protocol-5 arrays)
    _codecs.encode, only with the latin1 encoding   (how Python 3 writes bytes at protocol 2)

Plain containers (dict, list, tuple, bytes, str, int, float) need no globals. Object arrays are
refused too: their items would come back as arbitrary Python objects.

A pickle can also attack the reader's time and memory: a list that contains itself, or a nest
of lists sharing their children (2**60 paths through 60 objects). So the file size is bounded
(:data:`MAX_BYTES`), and the check that walks the loaded structure visits each object once,
refusing more than :data:`MAX_OBJECTS` containers or nesting deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from archlab.errors import DataError

MAX_BYTES = 1 << 30  # 1 GiB; a CIFAR-10 batch is 31 MB
MAX_OBJECTS = 1_000_000  # containers and arrays walked; a CIFAR batch has a handful
MAX_DEPTH = 64  # nesting of containers; a CIFAR batch is a dict of arrays and lists (depth 2)

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles from Python 3 store bytes as _codecs.encode(str, "latin1"); no other
    # codec is needed, so no other is allowed.
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _numpy_attr(module: str, name: str) -> Any:
    import importlib

    try:  # numpy >= 2 names its internals numpy._core; numpy.core is a deprecated alias
        return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
    except ImportError:
        return getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` allows only the numpy array globals listed above."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "_codecs":
            return _latin1_encode
        return _numpy_attr(module, name)


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle holding only containers, scalars, bytes and numeric numpy arrays.

    Raises:
        DataError: naming the file, when it asks for any other global, holds an object array,
            or is not a readable pickle.
    """
    import warnings

    import numpy as np

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise DataError(f"{path}: {size} bytes is more than a CIFAR-style batch may hold ({MAX_BYTES})")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: file is empty")
    try:
        with warnings.catch_warnings():  # numpy.core is a deprecated alias of numpy._core
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{path}: refused to unpickle: {exc} (only numpy arrays and plain containers are read)"
        ) from None
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError(f"{path}: not a readable CIFAR-style pickle ({type(exc).__name__}: {exc})") from None
    _reject_object_arrays(obj, path, np)
    return obj


def _reject_object_arrays(obj: Any, path: Path, np) -> None:
    """Walk the loaded structure once per object (cycles and shared children are visited once),
    refusing object arrays, more than MAX_OBJECTS containers and nesting deeper than MAX_DEPTH."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (np.ndarray, dict, list, tuple)) or id(item) in seen:
            continue
        seen.add(id(item))
        if len(seen) > MAX_OBJECTS:
            raise DataError(f"{path}: holds more than {MAX_OBJECTS} containers; not a CIFAR-style batch")
        if depth > MAX_DEPTH:
            raise DataError(f"{path}: containers nested deeper than {MAX_DEPTH}; not a CIFAR-style batch")
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise DataError(f"{path}: holds an object array, which is not read (numeric arrays only)")
        elif isinstance(item, dict):
            stack.extend((child, depth + 1) for child in (*item.keys(), *item.values()))
        else:
            stack.extend((child, depth + 1) for child in item)
