"""Images: the bundled ``digits``, and readers for image folders, MNIST IDX and CIFAR-10 batches.

Every image bundle has inputs ``(N, C, H, W)`` float32: raw pixels divided by ``pixel_max``
(16 for ``digits``, 255 for image files) to [0, 1], then (when ``normalize``) standardised per
channel with train statistics (``info["normalization"]`` with ``over="channel"``); targets
``(N,)`` int64 in ``0..K-1``. ``info`` carries ``in_channels``, ``image_size`` ([H, W]),
``pixel_max``, ``mode`` (``L`` or ``RGB``), ``num_classes`` and ``class_names``: what
:class:`archlab.data.preprocess.Preprocessing` needs to turn a user's raw pixels or image files
into the same inputs.

MNIST and CIFAR-10 cannot be downloaded at run time; a user who has the
standard files points :func:`archlab.data.load` at them.

An image folder too large for memory is streamed (``stream=True``, or ``"auto"`` by its size):
only the file list and labels are held; DataLoader workers decode each image when the trainer
asks for it (:class:`archlab.data.streams.ImageFolderSource`).
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from archlab.data.base import DataBundle
from archlab.data.pixels import IMAGE_SUFFIXES, image_files, image_pixels, open_image
from archlab.data.splits import supervised_bundle
from archlab.data.streams import FLOAT_BYTES_IN_MEMORY, ImageFolderSource, choose_streaming, supervised_stream_bundle
from archlab.errors import DataError, require


def image_bundle(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    normalize: bool,
    pixel_max: float,
    fixed_test: tuple[np.ndarray, np.ndarray] | None = None,
    info: dict | None = None,
) -> DataBundle:
    """Pack (N, C, H, W) raw pixels in [0, pixel_max] and int labels into a bundle: pixels are
    scaled to [0, 1] here (and recorded), then standardised per channel with train statistics."""
    info = _image_info(info, x.shape[1:], pixel_max, class_names)
    scale = lambda a: np.asarray(a, dtype=np.float64) / float(pixel_max)  # noqa: E731
    return supervised_bundle(
        name,
        "image",
        "classification",
        scale(x),
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        norm_axes=(0, 2, 3),
        norm_over="channel",
        fixed_test=None if fixed_test is None else (scale(fixed_test[0]), fixed_test[1]),
        info=info,
    )


def _image_info(info: dict | None, chw: tuple[int, ...], pixel_max: float, class_names: list[str]) -> dict:
    info = dict(info or {})
    info.update(
        in_channels=int(chw[0]),
        image_size=[int(chw[1]), int(chw[2])],
        pixel_max=float(pixel_max),
        num_classes=len(class_names),
        class_names=class_names,
    )
    info.setdefault("mode", "L" if chw[0] == 1 else "RGB")
    return info


# ----------------------------------------------------------------------------------- digits
def load_digits(
    *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, normalize: bool = True
) -> DataBundle:
    """scikit-learn's 1,797 8x8 handwritten digits, 10 classes.

    Returns inputs (N, 1, 8, 8) float32: pixel values 0..16 scaled to [0, 1], then standardised
    with the train split's channel mean and std; target (N,) int64.
    """
    datasets = require("sklearn.datasets", "data", "the digits dataset")
    raw = datasets.load_digits()
    x = np.asarray(raw.images, dtype=np.float64)[:, None]  # (N, 8, 8) -> (N, 1, 8, 8), values 0..16
    y = np.asarray(raw.target, dtype=np.int64)
    return image_bundle(
        "digits",
        x,
        y,
        [str(i) for i in range(10)],
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        pixel_max=16.0,
        info={"source": "sklearn.datasets.load_digits"},
    )


# ----------------------------------------------------------------------------- image folder
def _parse_size(resize) -> tuple[int, int] | None:
    if resize is None:
        return None
    if isinstance(resize, int):
        return (resize, resize)
    try:
        h, w = (int(v) for v in resize)
    except (TypeError, ValueError):
        raise DataError(f"resize must be an int or (height, width); got {resize!r}") from None
    return (h, w)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_folder(root: Path, class_names: list[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """(image path, class id) of every image under ``root/<class>/``, and the class names."""
    dirs = _class_dirs(root)
    if not dirs:
        raise DataError(f"{root}: expected one subfolder per class; found no subfolders")
    names = [d.name for d in dirs]
    if class_names is not None and names != class_names:
        raise DataError(f"{root}: class folders {names} differ from the train folders {class_names}")
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(dirs):
        imgs = image_files(d)
        if not imgs:
            raise DataError(f"class folder {d} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        files.extend((p, label) for p in imgs)
    return files, names


def _folder_format(
    files: list[tuple[Path, int]], formats: list[tuple[str, tuple[int, int]]], size, mode: str | None
) -> tuple[str, tuple[int, int]]:
    """The mode and (H, W) of a folder's images from their (mode, (W, H)): grey only when every
    image is grey; without ``size`` every image must have the size of the first."""
    if mode is None:
        mode = "L" if all(m in ("L", "1", "I", "I;16", "F") for m, _ in formats) else "RGB"
    if mode not in ("L", "RGB"):
        raise DataError(f"mode must be 'L' (grey) or 'RGB'; got {mode!r}")
    first = formats[0][1]  # (W, H)
    if size is None:
        for (path, _), (_, wh) in zip(files, formats):
            if wh != first:
                raise DataError(
                    f"{path}: size {wh[0]}x{wh[1]} differs from {files[0][0]} ({first[0]}x{first[1]}); "
                    "pass resize=(height, width)"
                )
    return mode, (first[1], first[0]) if size is None else size


def _read_folder(
    root: Path, size: tuple[int, int] | None, mode: str | None, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    files, names = _list_folder(root, class_names)
    opened = [open_image(path) for path, _ in files]
    mode, _ = _folder_format(files, [(im.mode, im.size) for im in opened], size, mode)
    x = np.stack([image_pixels(im, mode, size) for im in opened])  # (N, C, H, W) pixels 0..255
    y = np.array([label for _, label in files], dtype=np.int64)
    return x, y, names, {"mode": mode}


def load_image_folder(
    path: str | Path,
    *,
    resize=None,
    mode: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    stream: bool | str = "auto",
    workers: int | None = None,
) -> DataBundle:
    """Images in ``root/<class>/*.png`` (PIL), or ``root/train/<class>`` + ``root/test/<class>``.

    Args:
        resize: int or (height, width); without it every image must have the same size.
        mode: ``"L"`` (grey, C=1) or ``"RGB"`` (C=3); by default grey only if every image is.
        stream: decode images lazily, batch by batch (True), hold all pixels in memory (False),
            or choose by the folder's size (``"auto"``). Streamed statistics come from at most
            1,024 train images.
        workers: DataLoader processes decoding a streamed folder (default: half the CPUs, 1 to 4).

    Returns inputs (N, C, H, W) float32 (pixels / 255, then per-channel standardised with train
    statistics), target (N,) int64; class ids follow the sorted folder names. ``info["resize"]``
    records whether images were resized (prediction then resizes new images the same way).

    Raises:
        DataError: a class folder with no images, an unreadable image, mixed sizes without resize.
    """
    root = Path(path)
    size = _parse_size(resize)
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    options = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, normalize=normalize)
    streamed, choice = _stream_folder(root, split_layout, size, mode, stream, workers, **options)
    if streamed is not None:
        return streamed
    if split_layout:
        x, y, names, meta = _read_folder(root / "train", size, mode)
        if size is None:
            size = (x.shape[2], x.shape[3])
        xt, yt, _, _ = _read_folder(root / "test", size, meta["mode"], class_names=names)
        return image_bundle(
            str(path),
            x,
            y,
            names,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=0.0,
            normalize=normalize,
            pixel_max=255.0,
            fixed_test=(xt, yt),
            info={"source": "image folder", "resize": resize is not None, **meta, "streaming": choice},
        )
    x, y, names, meta = _read_folder(root, size, mode)
    return image_bundle(
        str(path),
        x,
        y,
        names,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        pixel_max=255.0,
        info={"source": "image folder", "resize": resize is not None, **meta, "streaming": choice},
    )


def _image_format(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (W, H)) of an image file from its header (no pixels decoded)."""
    Image = require("PIL.Image", "data", "reading images")
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except Exception as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _stream_folder(
    root: Path, split_layout: bool, size, mode: str | None, stream, workers: int | None, **options
) -> tuple[DataBundle | None, dict[str, Any]]:
    """The folder as streamed splits when ``stream`` asks for it (or ``"auto"`` finds it too large
    for memory), else None; and the choice's record. Reads image headers only (sizes, modes)."""
    train_root = root / "train" if split_layout else root
    files, names = _list_folder(train_root)
    test_files = _list_folder(root / "test", names)[0] if split_layout else []
    mode, hw = _folder_format(files, [_image_format(p) for p, _ in files], size, mode)
    channels = 1 if mode == "L" else 3
    estimate = (len(files) + len(test_files)) * channels * hw[0] * hw[1] * FLOAT_BYTES_IN_MEMORY
    choice = choose_streaming(stream, estimate, str(root))
    if not choice["streamed"]:
        return None, choice
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 2) // 2))
    info = _image_info(
        {"source": "image folder", "resize": size is not None, "mode": mode, "streaming": choice},
        (channels, *hw),
        255.0,
        names,
    )
    info["input_shape"] = [channels, *hw]

    def source(pairs: list[tuple[Path, int]], stats: dict | None, resize: bool) -> ImageFolderSource:
        labels = np.array([c for _, c in pairs], dtype=np.int64)
        return ImageFolderSource([str(p) for p, _ in pairs], labels, stats, mode=mode, size=hw, resize=resize)

    bundle = supervised_stream_bundle(
        str(root),
        "image",
        "classification",
        len(files),
        np.array([c for _, c in files], dtype=np.int64),
        lambda rows, target, stats: source([files[r] for r in rows], stats, size is not None),
        # test images take the train size, as the in-memory reader resizes them
        fixed_test=(lambda stats: source(test_files, stats, True)) if split_layout else None,
        workers=workers,
        info=info,
        norm_axes=(0, 2, 3),
        norm_over="channel",
        **options,
    )
    return bundle, choice


# -------------------------------------------------------------------------------- MNIST IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` allowed): magic, big-endian dims, raw data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: {'empty file' if not raw else 'too short for an IDX header'}")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()}, expected 0000 + type + ndim)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says {dims} ({expected} bytes of data); file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _idx_pair(images: Path, labels: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if labels is None:
        guess = Path(str(images).replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1"))
        if guess == images or not guess.exists():
            raise DataError(f"{images}: no labels file found next to it (looked for {guess.name}); pass labels=PATH")
        labels = guess
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3:
        raise DataError(f"{images}: expected (N, H, W) images (idx3); got {x.ndim} dimensions {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{labels}: expected {len(x)} labels (idx1) to match {images.name}; got shape {y.shape}")
    return x, y.astype(np.int64)


def load_idx(
    path: str | Path,
    *,
    labels: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
) -> DataBundle:
    """MNIST-format IDX files: an ``*-images-idx3-ubyte[.gz]`` file with its labels file, or a
    directory holding ``train-*`` and ``t10k-*`` pairs (then the test split is the fixed t10k one).

    Returns inputs (N, 1, H, W) float32 (pixels / 255, then standardised with train statistics),
    target (N,) int64; ``num_classes`` is max label + 1 (labels must be 0..255 by the format).
    """
    path = Path(path)
    fixed = None
    if path.is_dir():

        def find(prefix: str) -> Path | None:
            hits = sorted(p for p in path.iterdir() if p.name.startswith(prefix) and "images" in p.name)
            return hits[0] if hits else None

        tr, te = find("train"), find("t10k")
        if tr is None:
            raise DataError(f"{path}: no train-images-idx3-ubyte[.gz] file in this folder")
        x, y = _idx_pair(tr, None)
        if te is not None:
            fixed = _idx_pair(te, None)
    else:
        x, y = _idx_pair(path, Path(labels) if labels else None)
    k = int(max(y.max(), fixed[1].max() if fixed else 0)) + 1
    prep = lambda a: a.astype(np.float64)[:, None]  # noqa: E731  (N, H, W) -> (N, 1, H, W)
    fixed_t = None if fixed is None else (prep(fixed[0]), fixed[1])
    return image_bundle(
        str(path),
        prep(x),
        y,
        [str(i) for i in range(k)],
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=0.0 if fixed else test_fraction,
        normalize=normalize,
        pixel_max=255.0,
        fixed_test=fixed_t,
        info={"source": "MNIST IDX"},
    )


# --------------------------------------------------------------------------- CIFAR-10 batches
def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch via the restricted unpickler: (N, 3, 32, 32) uint8 and labels."""
    from archlab.data.safe_pickle import safe_load_pickle

    path = Path(path)
    obj = safe_load_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with 'data' and 'labels'; got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if labels is None:
        labels = _get(obj, "fine_labels")
    if data is None or labels is None:
        raise DataError(f"{path}: expected keys 'data' and 'labels'; got {sorted(map(repr, obj))}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be (N, 3072) uint8; got {data.shape} {data.dtype}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must be integers") from None
    if labels.shape != (len(data),):
        raise DataError(f"{path}: expected {len(data)} labels; got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 99):
        bad = int(np.flatnonzero((labels < 0) | (labels > 99))[0])
        raise DataError(f"{path}: label {int(labels[bad])} at row {bad} is out of range 0..99")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(
    path: str | Path, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, normalize: bool = True
) -> DataBundle:
    """CIFAR-10 python batches: a folder with ``data_batch_*`` (+ ``test_batch``, ``batches.meta``)
    or a single batch file. Read with a restricted unpickler (see ``archlab.data.safe_pickle``),
    never ``pickle.load``.

    Returns inputs (N, 3, 32, 32) float32 (pixels / 255, then per-channel standardised with train
    statistics), target (N,) int64; ``class_names`` from ``batches.meta`` when present.
    """
    from archlab.data.safe_pickle import safe_load_pickle

    path = Path(path)
    fixed = None
    names = None
    if path.is_dir():
        batches = sorted(
            path.glob("data_batch_*"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
        )
        if not batches:
            raise DataError(f"{path}: no data_batch_* files in this folder")
        parts = [read_cifar_batch(b) for b in batches]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if (path / "test_batch").exists():
            fixed = read_cifar_batch(path / "test_batch")
        if (path / "batches.meta").exists():
            meta = safe_load_pickle(path / "batches.meta")
            raw = _get(meta, "label_names") if isinstance(meta, dict) else None
            if raw is not None:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    else:
        x, y = read_cifar_batch(path)
    k = int(max(y.max(), fixed[1].max() if fixed else 0)) + 1
    if names is None or len(names) < k:
        names = [str(i) for i in range(k)]
    prep = lambda a: a.astype(np.float64)  # noqa: E731
    fixed_t = None if fixed is None else (prep(fixed[0]), fixed[1])
    return image_bundle(
        str(path),
        prep(x),
        y,
        names,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=0.0 if fixed else test_fraction,
        normalize=normalize,
        pixel_max=255.0,
        fixed_test=fixed_t,
        info={"source": "CIFAR-10 python batches"},
    )


__all__ = ["load_digits", "load_image_folder", "load_idx", "load_cifar", "read_idx", "read_cifar_batch"]
