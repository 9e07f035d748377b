"""Token files on disk: a text encoded once into a memory-mappable ``.npy``, or a user's ready file.

A streamed language model reads its windows from a 1-D token array on disk (see
:class:`archlab.data.streams.TokenWindows`), so the text is encoded once and cached:

- The cache lives in ``$ARCHLAB_CACHE/tokens`` (default ``~/.cache/archlab/tokens``), one folder
  per source identity: a user's file by resolved path, size, modification time, level, encoding
  and ``max_chars``; the bundled corpus by its name, package version and options. A changed file
  gets a new entry; a second load of the same source reuses the tokens without encoding again.
- A big text is read in chunks of 16 M characters: at char level a first pass collects the
  vocabulary (sorted code points, the same ids as :func:`archlab.data.text.encode_text`), a second
  pass encodes and writes; memory stays bounded by the chunk, not the file.
- Tokens are stored in the smallest unsigned dtype holding the vocabulary (``uint8`` up to 256
  symbols, ``uint16`` up to 65,536, else ``uint32``), written atomically, then ``meta.json``
  (vocabulary, count, dtype, SHA-256) last: a cache entry without a valid ``meta.json``, or whose
  token file does not match it (truncated, altered), is rebuilt, never trusted.

A ready token file is also accepted as data: a ``.npy`` holding a 1-D integer array, or a raw
``.bin`` (nanoGPT's ``train.bin``; ``dtype`` default ``uint16``) with its ``vocab`` or
``vocab_size`` given. It is scanned once in chunks (negative ids, ids beyond the vocabulary).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archlab.errors import DataError
from archlab.io import atomic_write_json, atomic_writer, sha256_file

log = logging.getLogger("archlab.data")

CHUNK = 16 * 2**20  # characters per text chunk
SCAN_CHUNK = 4 * 2**20  # tokens per read when checking a token file
CACHE_FORMAT = 1


@dataclass
class TokenFile:
    """A 1-D token array on disk and what it encodes.

    Attributes:
        path: the ``.npy`` (or raw ``.bin``) file.
        dtype: the stored integer dtype.
        num_tokens: how many tokens it holds.
        vocab_size: ids are in ``0..vocab_size-1``.
        vocab: the symbol of each id (characters, or ``chr(byte)``), or None for a user's ids.
        level: ``char``, ``byte`` or ``token`` (a ready file of ids).
        offset: bytes before the first token (the ``.npy`` header; 0 for ``.bin``).
        reused: True when a cached file was reused without encoding.
    """

    path: Path
    dtype: np.dtype
    num_tokens: int
    vocab_size: int
    vocab: list[str] | None
    level: str
    offset: int = 0
    reused: bool = False

    def describe(self) -> dict[str, Any]:
        return {"file": str(self.path), "dtype": str(self.dtype), "num_tokens": self.num_tokens}


def cache_dir() -> Path:
    """Where token caches live: ``$ARCHLAB_CACHE/tokens`` (default ``~/.cache/archlab/tokens``)."""
    return Path(os.environ.get("ARCHLAB_CACHE") or "~/.cache/archlab").expanduser() / "tokens"


def smallest_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ids ``0..vocab_size-1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise DataError(f"a vocabulary of {vocab_size} symbols does not fit in uint32")


# ------------------------------------------------------------------------------------- chunks
def string_chunks(text: str) -> Callable[[], Iterator[str]]:
    """A chunk producer over an in-memory string (the bundled corpus)."""
    return lambda: (text[i : i + CHUNK] for i in range(0, len(text), CHUNK))


def file_chunks(path: Path, encoding: str, max_chars: int | None) -> Callable[[], Iterator[str]]:
    """A chunk producer over a text file, read like ``Path.read_text`` (universal newlines)."""

    def chunks() -> Iterator[str]:
        left = None if max_chars is None else int(max_chars)
        with open(path, encoding=encoding) as fh:
            while left is None or left > 0:
                try:
                    chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                except UnicodeDecodeError:
                    raise DataError(f"{path}: not valid {encoding} text; try encoding='latin-1'") from None
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    return chunks


def _codes(chunk: str) -> np.ndarray:
    return np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)  # one code point per char


# ---------------------------------------------------------------------------------- the cache
def text_tokens(identity: dict[str, Any], chunks: Callable[[], Iterable[str]], level: str, what: str) -> TokenFile:
    """The cached token file of a text, encoding it (chunk by chunk) only when no valid entry exists.

    Args:
        identity: what makes the text what it is (path, size, mtime, options...); its hash names
            the cache entry.
        chunks: a function returning the text as an iterable of strings (called once or twice).
        level: ``char`` or ``byte``.
        what: the source, for error messages.
    """
    if level not in ("char", "byte"):
        raise DataError(f"{what}: level must be 'char' or 'byte'; got {level!r}")
    found = cached_tokens(identity, level, what)
    if found is not None:
        return found
    key, folder = _entry(identity, level)
    log.info("%s: encoding the text into %s (%s level)", what, folder, level)
    if level == "char":
        present = np.zeros(0x110000, dtype=bool)  # every Unicode code point
        n = 0
        for chunk in chunks():
            present[_codes(chunk)] = True
            n += len(chunk)
        vocab = [chr(c) for c in np.flatnonzero(present)]  # sorted by code point, like sorted(set(text))
        lut = (np.cumsum(present) - 1).astype(smallest_dtype(len(vocab)))
        encode = lambda s: lut[_codes(s)]  # noqa: E731
    else:
        n = sum(len(chunk.encode("utf-8")) for chunk in chunks())
        vocab = [chr(i) for i in range(256)]
        encode = lambda s: np.frombuffer(s.encode("utf-8"), dtype=np.uint8)  # noqa: E731
    if n == 0:
        raise DataError(f"{what}: the text is empty; nothing to encode")
    dtype = smallest_dtype(len(vocab))
    path = folder / "tokens.npy"
    with atomic_writer(path) as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype.str, "fortran_order": False, "shape": (n,)})
        for chunk in chunks():
            fh.write(encode(chunk).astype(dtype, copy=False).tobytes())
    meta = {
        "format": CACHE_FORMAT,
        "source": key,
        "level": level,
        "vocab": vocab,
        "num_tokens": n,
        "dtype": dtype.str,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }
    atomic_write_json(folder / "meta.json", meta)  # written last: it marks the entry complete
    return TokenFile(path, dtype, n, len(vocab), vocab, level, offset=read_npy_header(path)[2])


def _entry(identity: dict[str, Any], level: str) -> tuple[dict[str, Any], Path]:
    """The cache key of a source and the folder it names."""
    key = dict(identity, level=level, format=CACHE_FORMAT)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return key, cache_dir() / digest


def cached_tokens(identity: dict[str, Any], level: str, what: str) -> TokenFile | None:
    """The intact cache entry of a source if there is one (no text needs to be read), else None."""
    found = _read_entry(_entry(identity, level)[1])
    if found is not None:
        log.info("%s: reusing the token cache %s (%d tokens)", what, found.path, found.num_tokens)
    return found


def _read_entry(folder: Path) -> TokenFile | None:
    """The cache entry in ``folder`` if it is complete and intact; None (logged) otherwise."""
    meta_path, path = folder / "meta.json", folder / "tokens.npy"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dtype, n, vocab = np.dtype(meta["dtype"]), int(meta["num_tokens"]), list(meta["vocab"])
        problem = None
        if not path.is_file() or path.stat().st_size != int(meta["bytes"]):
            problem = "the token file is missing or its size differs from the record (truncated?)"
        elif sha256_file(path) != meta["sha256"]:
            problem = "the token file's SHA-256 differs from the record (altered)"
        else:
            shape, stored, offset = read_npy_header(path)
            if (shape, stored) != ((n,), dtype):
                problem = "the token file's header differs from the record"
    except (ValueError, KeyError, TypeError, OSError, DataError) as exc:
        problem = f"unreadable record ({type(exc).__name__}: {exc})"
    if problem:
        log.warning("token cache %s is damaged (%s); rebuilding it", folder, problem)
        return None
    return TokenFile(path, dtype, n, len(vocab), vocab, str(meta["level"]), offset=offset, reused=True)


# ------------------------------------------------------------------------- ready token files
def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a ``.npy`` file, read from its header only."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if fortran and len(shape) > 1:
        raise DataError(
            f"{path}: Fortran-ordered arrays cannot be streamed; save it with np.save(np.ascontiguousarray(x))"
        )
    return tuple(shape), np.dtype(dtype), offset


def open_token_file(
    path: str | Path,
    *,
    vocab: list[str] | str | Path | None = None,
    vocab_size: int | None = None,
    dtype: str | None = None,
) -> TokenFile:
    """Check a user's token file (``.npy`` 1-D integers, or raw ``.bin`` + ``dtype``) and describe it.

    Args:
        vocab: the symbol of each id (a list of strings, or a JSON file holding one); sets
            ``vocab_size`` and lets generated ids be decoded.
        vocab_size: ids must be below it; default: the largest id + 1 (``.npy`` only).
        dtype: the integer dtype of a ``.bin`` file (default ``uint16``, nanoGPT's).

    Raises:
        DataError: not 1-D, not integer, empty, truncated, a negative id, an id >= vocab size.
    """
    path = Path(path)
    vocab = _read_vocab(vocab, path)
    if vocab is not None:
        if vocab_size is not None and int(vocab_size) != len(vocab):
            raise DataError(f"{path}: vocab_size={vocab_size} but the vocab lists {len(vocab)} symbols")
        vocab_size = len(vocab)
    if path.suffix.lower() == ".npy":
        shape, dt, offset = read_npy_header(path)
        if len(shape) != 1 or dt.kind not in "iu":
            raise DataError(f"{path}: a token file must hold a 1-D integer array; got shape {shape} dtype {dt}")
        n = shape[0]
    else:
        if vocab_size is None:
            raise DataError(f"{path}: a raw .bin token file needs vocab= (a list or JSON file) or vocab_size=")
        try:
            dt = np.dtype(dtype or "uint16")
        except TypeError:
            raise DataError(f"{path}: dtype must be an integer dtype such as 'uint16'; got {dtype!r}") from None
        if dt.kind not in "iu":
            raise DataError(f"{path}: dtype must be an integer dtype such as 'uint16'; got {dt}")
        offset, size = 0, path.stat().st_size
        if size % dt.itemsize:
            raise DataError(f"{path}: {size} bytes is not a whole number of {dt} tokens ({dt.itemsize} bytes each)")
        n = size // dt.itemsize
    if n == 0:
        raise DataError(f"{path}: the token file holds no tokens")
    if path.stat().st_size < offset + n * dt.itemsize:
        raise DataError(f"{path}: truncated: the header promises {n} tokens of {dt}, the file is shorter")
    lowest, highest = _scan_range(path, dt, offset, n)
    if lowest < 0:
        raise DataError(f"{path}: token ids must be >= 0; found {lowest}")
    if vocab_size is not None and highest >= int(vocab_size):
        at = _first_at_least(path, dt, offset, n, int(vocab_size))
        raise DataError(f"{path}: token id {highest} at position {at} is >= vocab_size {vocab_size}")
    return TokenFile(path, dt, int(n), int(vocab_size or highest + 1), vocab, "token", offset=offset)


def _read_vocab(vocab: list[str] | str | Path | None, path: Path) -> list[str] | None:
    if vocab is None or isinstance(vocab, list):
        return vocab
    vocab_path = Path(vocab)
    try:
        loaded = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: vocab= {vocab_path} is not a readable JSON list of symbols ({exc})") from None
    if not isinstance(loaded, list) or not all(isinstance(s, str) for s in loaded):
        raise DataError(f"{path}: vocab= {vocab_path} must hold a JSON list of strings; got {type(loaded).__name__}")
    return loaded


def _chunks_of(path: Path, dtype: np.dtype, offset: int, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """(position, ids) of a token file, read ``SCAN_CHUNK`` tokens at a time with plain reads (not
    the memory map, whose touched pages would count as resident memory)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        for start in range(0, n, SCAN_CHUNK):
            yield start, np.fromfile(fh, dtype=dtype, count=min(SCAN_CHUNK, n - start))


def _scan_range(path: Path, dtype: np.dtype, offset: int, n: int) -> tuple[int, int]:
    """(min, max) of a token file, read in chunks (bounded memory)."""
    lows, highs = zip(*((int(part.min()), int(part.max())) for _, part in _chunks_of(path, dtype, offset, n)))
    return min(lows), max(highs)


def _first_at_least(path: Path, dtype: np.dtype, offset: int, n: int, limit: int) -> int:
    for start, part in _chunks_of(path, dtype, offset, n):
        hits = np.flatnonzero(part >= limit)
        if len(hits):
            return start + int(hits[0])
    return -1


def file_identity(path: Path, **options: Any) -> dict[str, Any]:
    """A user's file as a cache key: resolved path, size and modification time, plus options."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, **options}
