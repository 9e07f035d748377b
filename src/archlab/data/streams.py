"""Sample sources for data larger than memory, and the choice between streaming and memory.

A :class:`archlab.data.base.StreamSplit` reads its samples through one of these sources:

- :class:`TokenWindows`: windows of a memory-mapped 1-D token file (language modelling). Window
  ``i`` starts at token ``lo + i * stride``; inputs ``(T,)`` int64 and target ``(T,)`` int64 shifted
  by one, as :func:`archlab.data.text.lm_windows` cuts them. A batch is one vectorised gather.
- :class:`NpySource`: rows of a memory-mapped ``.npy`` ``(N, ...)``.
- :class:`ImageFolderSource`: image files decoded with PIL when asked for, resized to the recorded
  size; only the file list and labels are held in memory.

Every source is picklable and cheap to pickle (a path and index arrays; the memory map opens on
first access in each process), so ``torch.utils.data.DataLoader`` workers can read it.

Normalisation statistics of streamed inputs come from a bounded, seeded sample of the train split
(at most :data:`STATS_SAMPLE` samples; all of them when the split is smaller, which gives the same
statistics as the in-memory loaders), recorded in ``info["normalization"]`` with ``sample_size``.

``stream="auto"`` streams when the in-memory form would need more than a threshold
(``ARCHLAB_STREAM_BYTES``, default 2 GiB or a quarter of the available memory if smaller); the
choice, the estimate and the threshold are logged and recorded in ``info["streaming"]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, StreamSplit, apply_normalization
from archlab.data.pixels import image_pixels, open_image
from archlab.data.splits import chronological_bounds, fit_standardizer, split_indices, stats_dict
from archlab.errors import DataError

log = logging.getLogger("archlab.data")

STATS_SAMPLE = 1024  # samples read to fit normalisation statistics of a streamed train split
STATS_BYTES = 256 * 2**20  # float64 bytes of that sample read at once; more is read in chunks
DEFAULT_STREAM_BYTES = 2 * 2**30
FLOAT_BYTES_IN_MEMORY = 28  # per value in memory: float64 read + scaled + normalised copies, float32 tensor


# --------------------------------------------------------------------------------- the choice
def stream_threshold() -> int:
    """Bytes above which ``stream="auto"`` streams: ``ARCHLAB_STREAM_BYTES`` or min(2 GiB, RAM / 4)."""
    env = os.environ.get("ARCHLAB_STREAM_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise DataError(f"ARCHLAB_STREAM_BYTES must be a number of bytes; got {env!r}") from None
    available = _available_memory()
    return DEFAULT_STREAM_BYTES if available is None else min(DEFAULT_STREAM_BYTES, available // 4)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def choose_streaming(stream: Any, estimate_bytes: float, what: str) -> dict[str, Any]:
    """Decide whether to stream; log and return the record for ``info["streaming"]``.

    Args:
        stream: ``"auto"`` (stream when ``estimate_bytes`` exceeds :func:`stream_threshold`),
            True or False (also ``"true"`` / ``"false"`` from a command line).
        estimate_bytes: what the in-memory form of the data would need.
    """
    words = {"auto": "auto", "true": True, "yes": True, "false": False, "no": False}
    choice = words.get(stream.lower(), stream) if isinstance(stream, str) else stream
    if choice not in ("auto", True, False):
        raise DataError(f"stream must be 'auto', True or False; got {stream!r}")
    threshold = stream_threshold()
    streamed = estimate_bytes > threshold if choice == "auto" else bool(choice)
    record = {
        "streamed": bool(streamed),
        "chosen_by": "auto" if choice == "auto" else "option",
        "in_memory_estimate_bytes": int(estimate_bytes),
        "threshold_bytes": int(threshold),
    }
    log.info(
        "%s: %s (%s; the in-memory form would need about %.1f MB, threshold %.1f MB)",
        what,
        "streaming from disk" if streamed else "loading into memory",
        "stream='auto'" if choice == "auto" else f"stream={choice}",
        estimate_bytes / 1e6,
        threshold / 1e6,
    )
    return record


# ------------------------------------------------------------------------------- token windows
class TokenWindows:
    """Windows of a 1-D token array (a ``.npy``, a raw ``.bin`` of ``dtype``, or an array in memory).

    Window ``i`` covers tokens ``[lo + i*stride, lo + i*stride + block_size]`` of ``[lo, hi)``.

    Args:
        tokens: a ``.npy`` path (memory-mapped), a ``.bin`` path (with ``dtype``), or an array.
        lo, hi: the token range this split may read (no window crosses ``hi``).
        block_size: T, the window length.
        stride: tokens between window starts (1: every offset).
        dtype: the dtype of a raw ``.bin`` file.
    """

    def __init__(
        self,
        tokens: str | Path | np.ndarray,
        lo: int,
        hi: int,
        block_size: int,
        stride: int,
        *,
        dtype: str | np.dtype | None = None,
    ) -> None:
        self.path = None if isinstance(tokens, np.ndarray) else str(tokens)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self._tokens = tokens if isinstance(tokens, np.ndarray) else None
        self.lo, self.hi, self.block_size, self.stride = int(lo), int(hi), int(block_size), int(stride)
        if self.block_size < 1 or self.stride < 1:
            raise DataError(f"block_size and stride must be >= 1; got {self.block_size}, {self.stride}")
        if not 0 <= self.lo <= self.hi <= len(self.tokens):
            raise DataError(f"token range [{self.lo}, {self.hi}) is outside the {len(self.tokens)} tokens")
        span = self.hi - self.lo - self.block_size  # window starts that leave room for the shifted target
        self._len = 0 if span < 1 else (span - 1) // self.stride + 1
        self._offsets = np.arange(self.block_size + 1)  # (T+1,)

    @property
    def tokens(self) -> np.ndarray:
        """The token array, memory-mapped on first access in this process."""
        if self._tokens is None:
            if self.path.lower().endswith(".npy"):
                self._tokens = np.load(self.path, mmap_mode="r", allow_pickle=False)
            else:
                self._tokens = np.memmap(self.path, dtype=self.dtype or np.uint16, mode="r")
        return self._tokens

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None:
            state["_tokens"] = None  # a worker maps the file itself; the map is not pickled
        return state

    def __len__(self) -> int:
        return self._len

    def fetch(self, idx: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Windows ``idx`` as inputs ((B, T) int64,) and target (B, T) int64, in one gather."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        check_indices(idx, len(self))
        starts = self.lo + idx * self.stride  # (B,)
        rows = np.asarray(self.tokens[starts[:, None] + self._offsets]).astype(np.int64)  # (B, T+1)
        rows = torch.from_numpy(rows)
        return (rows[:, :-1].contiguous(),), rows[:, 1:].contiguous()

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        (x,), y = self.fetch(np.array([i]))
        return (x[0],), y[0]


def check_indices(idx: np.ndarray, n: int) -> None:
    """IndexError naming the first index outside ``0..n-1``."""
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)][0]
        raise IndexError(f"sample index {int(bad)} is out of range for {n} samples")


def token_stream_bundle(
    name: str,
    token_file: Any,
    *,
    block_size: int,
    stride: int | None,
    val_fraction: float,
    test_fraction: float,
    info: dict[str, Any],
) -> DataBundle:
    """A language-modelling bundle over a token file (:class:`archlab.data.token_cache.TokenFile`).

    The stream splits contiguously like :func:`archlab.data.text.lm_bundle`. Train windows start at
    every ``stride`` tokens (default 1: any offset) and are sampled at random by the trainer
    (nanoGPT's sampling); val and test windows do not overlap (stride ``block_size``) and are
    read in order.
    """
    block_size = int(block_size)
    train_stride = 1 if stride is None else int(stride)
    n = token_file.num_tokens
    train_end, val_end = chronological_bounds(n, val_fraction, test_fraction)
    bounds = {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n)}
    fractions = {"train": 1.0, "val": val_fraction, "test": test_fraction}
    splits: dict[str, StreamSplit | None] = {}
    for key, (lo, hi) in bounds.items():
        if fractions[key] == 0:
            splits[key] = None
            continue
        if hi - lo < block_size + 1:
            raise DataError(
                f"{name}: the {key} part holds {hi - lo} tokens, fewer than block_size + 1 = {block_size + 1}; "
                "use a smaller block_size or more text"
            )
        windows = TokenWindows(
            token_file.path, lo, hi, block_size, train_stride if key == "train" else block_size, dtype=token_file.dtype
        )
        describe = {"what": f"token windows of {token_file.path}", **token_file.describe(), "tokens": [lo, hi]}
        splits[key] = StreamSplit(windows, sampling="random" if key == "train" else "epoch", describe=describe)
    info = dict(info)
    if token_file.vocab is not None:
        info["vocab"] = list(token_file.vocab)
    info.update(
        vocab_size=token_file.vocab_size,
        block_size=block_size,
        stride=train_stride,
        eval_stride=block_size,
        level=token_file.level,
        num_tokens=int(n),
        seq_len=block_size,
        input_shape=[block_size],
        token_file=token_file.describe(),
        split_sizes={k: (0 if v is None else len(v)) for k, v in splits.items()},
    )
    return DataBundle(name, "text", "language_modeling", splits["train"], splits["val"], splits["test"], info)


def lm_memory_estimate(num_tokens: int, block_size: int, stride: int | None) -> float:
    """Bytes the in-memory windows of :func:`archlab.data.text.lm_bundle` would need (int64 inputs and
    targets of every window, plus the encoded text)."""
    stride = int(block_size) if stride is None else int(stride)
    return 2 * 8 * num_tokens * int(block_size) / max(stride, 1) + 16 * num_tokens


# ------------------------------------------------------------------------------ row sources
class RowSource:
    """Rows of a dataset read on demand, scaled, normalised and paired with in-memory targets.

    Subclasses read raw rows with :meth:`read` ((B, ...) float64, already divided by any pixel
    scale); this class applies the recorded normalisation and returns float32 inputs.

    Args:
        rows: (N,) the dataset rows of this split (indices into the file or file list).
        target: (N,) int64 class ids, (N, k) float targets, or None.
        stats: ``info["normalization"]`` or None.
    """

    def __init__(self, rows: np.ndarray, target: np.ndarray | None, stats: dict[str, Any] | None) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.target = target
        self.stats = stats

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fetch(self, idx: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        """Samples ``idx`` of this split: inputs ((B, ...) float32,) and target (B, ...) or None."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        check_indices(idx, len(self))
        x = apply_normalization(torch.from_numpy(self.read(self.rows[idx])), self.stats)
        x = x.to(torch.float32)
        if self.target is None:
            return (x,), None
        t = self.target[idx]
        return (x,), torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64 if t.dtype.kind in "iu" else np.float32))

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        (x,), t = self.fetch(np.array([i]))
        return (x[0],), None if t is None else t[0]


class NpySource(RowSource):
    """Rows of a ``.npy`` ``(N, ...)`` memory-mapped on first access (see :class:`RowSource`)."""

    def __init__(self, path: str | Path, rows: np.ndarray, target: np.ndarray | None, stats: dict | None) -> None:
        super().__init__(rows, target, stats)
        self.path = str(path)
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def read(self, rows: np.ndarray) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        order = np.argsort(rows, kind="stable")  # read in file order (sequential pages), then restore
        out = np.empty((len(rows),) + self._array.shape[1:], dtype=np.float64)
        out[order] = self._array[rows[order]]
        return out


class ImageFolderSource(RowSource):
    """Image files decoded with PIL on demand: (C, H, W) pixels / ``pixel_max`` (see :class:`RowSource`).

    Args:
        files: the split's image paths (rows index into it).
        mode: ``L`` or ``RGB``.
        size: (H, W) of every image.
        resize: resize images to ``size``; otherwise an image of another size is a DataError.
    """

    def __init__(
        self,
        files: list[str],
        target: np.ndarray | None,
        stats: dict | None,
        *,
        mode: str,
        size: tuple[int, int],
        resize: bool,
        pixel_max: float = 255.0,
    ) -> None:
        super().__init__(np.arange(len(files)), target, stats)
        self.files, self.mode, self.size = list(files), mode, tuple(size)
        self.resize, self.pixel_max = resize, pixel_max

    def read(self, rows: np.ndarray) -> np.ndarray:

        batch = []
        for r in rows:  # one decode per image of the batch
            im = open_image(Path(self.files[r]))
            if not self.resize and im.size != (self.size[1], self.size[0]):
                raise DataError(
                    f"{self.files[r]}: size {im.size[0]}x{im.size[1]} differs from the recorded "
                    f"{self.size[1]}x{self.size[0]}; load the folder with resize=(height, width)"
                )
            batch.append(image_pixels(im, self.mode, self.size if self.resize else None))
        return np.stack(batch) / self.pixel_max  # (B, C, H, W)


# ------------------------------------------------------------------------- supervised bundles
def stats_sample(train_rows: np.ndarray, seed: int, limit: int = STATS_SAMPLE) -> np.ndarray:
    """The train rows normalisation statistics are fitted on: all of them up to ``limit``, else a
    seeded sample of ``limit`` (sorted, so a memory map reads it in file order)."""
    if len(train_rows) <= limit:
        return train_rows
    rng = np.random.default_rng([int(seed), 1024])
    return np.sort(rng.choice(train_rows, size=limit, replace=False))


def sample_statistics(source: RowSource, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of all of ``source``'s rows over ``axes``, as :func:`fit_standardizer` gives them.

    A sample that fits in :data:`STATS_BYTES` is read at once (the same numbers as the in-memory
    loaders); a larger one (1,024 big images) in chunks, in two passes: the mean, then the mean
    squared deviation from it.
    """
    rows = source.rows
    chunk = max(1, STATS_BYTES // source.read(rows[:1]).nbytes)
    if len(rows) <= chunk:
        return fit_standardizer(source.read(rows), axes)
    parts = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
    total, count = 0.0, 0
    for part in parts:
        x = source.read(part)
        total = total + x.sum(axis=axes, keepdims=True)
        count += x.size // int(np.prod([x.shape[a] for a in range(x.ndim) if a not in axes]))
    mean = total / count
    squares = sum(((source.read(part) - mean) ** 2).sum(axis=axes, keepdims=True) for part in parts)
    std = np.sqrt(squares / count)
    return mean, np.where(std < 1e-12, 1.0, std)


def supervised_stream_bundle(
    name: str,
    modality: str,
    task: str,
    n: int,
    y: np.ndarray | None,
    make_source: Callable[[np.ndarray, np.ndarray | None, dict | None], RowSource],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    normalize: bool,
    norm_axes: tuple[int, ...],
    norm_over: str,
    workers: int = 0,
    fixed_test: Callable[[dict | None], RowSource] | None = None,
    info: dict[str, Any],
) -> DataBundle:
    """Split ``n`` rows like :func:`archlab.data.splits.supervised_bundle` (same seeded, stratified
    indices), fit normalisation on a sample of train, and wrap each split in a StreamSplit.

    Args:
        y: the targets of all rows (in memory), or None.
        make_source: ``(rows, targets of those rows, stats) -> source`` for one split.
        fixed_test: ``stats -> source`` of a given test set (val is then carved from train only).
    """
    classify = task == "classification"
    labels = y if (classify and y is not None) else None
    tr, va, te = split_indices(n, val_fraction, 0.0 if fixed_test else test_fraction, seed, labels)
    stats = None
    info = dict(info)
    if normalize:
        sample = stats_sample(tr, seed)
        mean, std = sample_statistics(make_source(sample, None, None), norm_axes)
        stats = {**stats_dict(mean, std, norm_over), "sample_size": len(sample), "train_size": len(tr)}
        info["normalization"] = stats
        log.info("%s: normalisation fitted on %d of %d train samples", name, len(sample), len(tr))
    sources = {
        key: make_source(rows, None if y is None else y[rows], stats) for key, rows in (("train", tr), ("val", va))
    }
    sources["test"] = fixed_test(stats) if fixed_test else make_source(te, None if y is None else y[te], stats)
    splits: dict[str, StreamSplit | None] = {}
    for key, source in sources.items():
        if len(source) == 0 and key != "train":
            splits[key] = None
            continue
        target = source.target
        held = None
        if target is not None:
            held = torch.from_numpy(
                np.ascontiguousarray(target, dtype=np.int64)
                if classify
                else np.ascontiguousarray(target.reshape(len(target), -1), dtype=np.float32)
            )
            source.target = held.numpy()
        describe = {"what": f"{type(source).__name__} of {name}", "samples": len(source)}
        splits[key] = StreamSplit(source, sampling="epoch", labels=held, workers=workers, describe=describe)
    info["split_sizes"] = {k: (0 if v is None else len(v)) for k, v in splits.items()}
    info.setdefault("seed", seed)
    return DataBundle(name, modality, task, splits["train"], splits["val"], splits["test"], info)
