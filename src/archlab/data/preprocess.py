"""What turns raw data into a model's inputs, recorded as data and applied by one object.

A run records a :class:`Preprocessing` (in ``data_info.json`` under ``"preprocessing"``; an
export copies it into ``preprocessing.json``). ``predict``, ``evaluate``, the export and the
report all read that record, so a user's raw file gets exactly the steps the training data got:

- a **reader** turns a file of the data's own kind into raw arrays: CSV rows (the training
  columns; the target column is optional), image files or a folder of them (colour mode, size),
  a text file (the training vocabulary); an ``.npy`` holds the raw array itself;
- numeric **steps**, in order: ``reshape`` to one sample's shape, ``scale`` (e.g. digits' pixel
  values 0..16 divided by 16), ``standardize`` with statistics fitted on the train split,
  ``layout`` (signals as channels, sequence or flat).

"Raw" means the data source's own units before any fitted statistic: digits' pixel values
0..16, image pixels 0..255, CSV feature values (categories by name), token ids for text.

>>> prep = Preprocessing.from_bundle(archlab.data.load("digits"))
>>> x = prep.apply(raw_pixels)            # (N, 8, 8) values 0..16 -> (N, 1, 8, 8) float32
>>> x, y = prep.read("new_rows.csv")      # a file -> model inputs (and targets when present)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, apply_normalization, is_streamed
from archlab.errors import DataError, ShapeError, require

log = logging.getLogger("archlab.data")

SCHEMA_VERSION = 1


@dataclass
class Preprocessing:
    """Raw data -> model inputs: a reader for files and numeric steps, all plain JSON data.

    Attributes:
        modality, task: the data's, words of :mod:`archlab.capabilities`.
        sample_shape: one raw sample's shape after ``reshape`` (e.g. ``[1, 8, 8]``, ``[30]``).
        steps: numeric steps applied in order by :meth:`apply`, each ``{"op": ..., ...}``.
        reader: how a file of the data's own kind becomes a raw array (``{"kind": "csv" | "image"
            | "text", ...}``), or ``None`` when only ``.npy`` arrays are accepted.
        class_names: names of the class ids, for readable predictions.
        target_normalization: statistics a regression / forecasting output is mapped back with.
        choices: the inferred choices shown in the "data" block when training starts.
    """

    modality: str
    task: str
    sample_shape: list[int]
    steps: list[dict[str, Any]] = field(default_factory=list)
    reader: dict[str, Any] | None = None
    class_names: list[str] | None = None
    target_normalization: dict[str, Any] | None = None
    choices: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------ building
    @classmethod
    def from_bundle(cls, bundle: DataBundle) -> Preprocessing:
        """Read the preprocessing a loader applied from the bundle's ``info``."""
        info = bundle.info
        if is_streamed(bundle.train):  # one input read from disk; its shape is in info (streamed loaders set it)
            reader, shape = _reader(info), list(info.get("input_shape") or [])
        elif len(bundle.train.inputs) != 1 or not bundle.train.indexable:
            reader, shape = None, []  # multi-input and whole-graph data: nothing to read from files
        else:
            reader, shape = _reader(info), list(info.get("input_shape") or bundle.train.inputs[0].shape[1:])
        steps: list[dict[str, Any]] = [{"op": "reshape", "shape": shape}] if shape else []
        if info.get("pixel_max"):
            steps.append({"op": "scale", "divide_by": float(info["pixel_max"])})
        if info.get("normalization"):
            norm = dict(info["normalization"])
            if info.get("categorical_index"):
                norm["skipped"] = list(info["categorical_index"])  # categorical ids are not standardised
            steps.append({"op": "standardize", **norm})
        if info.get("layout") in ("sequence", "flat"):
            steps.append({"op": "layout", "layout": info["layout"]})
        prep = cls(
            modality=bundle.modality,
            task=bundle.task,
            sample_shape=shape,
            steps=steps,
            reader=reader,
            class_names=info.get("class_names"),
            target_normalization=info.get("target_normalization"),
        )
        prep.choices = _choices(bundle, prep)
        return prep

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (:meth:`from_json` reads it back)."""
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Preprocessing:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> list[str]:
        """One readable line per step, reader first."""
        lines = [_describe_reader(self.reader)] if self.reader else []
        lines += [_describe_step(s) for s in self.steps]
        return lines or ["none: the model takes its inputs as they are"]

    # ------------------------------------------------------------------------------ applying
    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Model inputs from a raw array (the data source's units, see the module docstring).

        Returns float32 inputs, or int64 token ids for text.

        Raises:
            ShapeError: the samples do not have the recorded shape (expected and received named).
            DataError: NaN / inf values, or token ids outside the vocabulary.
        """
        raw = np.asarray(raw)
        if raw.dtype.kind not in "biuf":
            raise DataError(f"expected a numeric array; got dtype {raw.dtype}")
        if self.modality == "text":
            return self._token_ids(raw)
        x = raw.astype(np.float64)
        if not np.isfinite(x).all():
            raise DataError(f"expected finite values; got {int((~np.isfinite(x)).sum())} NaN or Inf")
        for step in self.steps:
            x = _STEPS[step["op"]](x, step)
        return x.astype(np.float32)

    def read(self, path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
        """(model inputs, targets or None) of a file: ``.npy`` raw values, or a file of the data's
        kind (CSV rows, an image or a folder of images, a text file)."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.suffix.lower() == ".npy":
            return self.apply(read_npy(path)), None
        kind = (self.reader or {}).get("kind")
        readers = {"csv": _read_csv, "image": _read_images, "text": _read_text}
        if kind not in readers:
            raise DataError(
                f"{path}: this run's {self.modality} data is given as an .npy array of raw values "
                f"(samples of shape {tuple(self.sample_shape)}); got {path.suffix or 'a folder'}"
            )
        raw, target = readers[kind](self, path)
        return (raw if kind == "text" else self.apply(raw)), target

    def readable(self, predictions: np.ndarray) -> list[Any]:
        """Predictions as a user reads them: class names, values in the data's units, or text."""
        p = np.asarray(predictions)
        if self.class_names and p.dtype.kind in "iu" and p.ndim == 1:
            return [self.class_names[i] if 0 <= i < len(self.class_names) else int(i) for i in p]
        if self.modality == "text" and self.reader and p.dtype.kind in "iu":
            vocab = self.reader["vocab"]
            return ["".join(vocab[i] for i in row) for row in p.reshape(len(p), -1)]
        if self.target_normalization and p.dtype.kind == "f":
            p = unstandardize(p, self.target_normalization)
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]  # one regression output: a number per row, not a one-element list
        return [v.tolist() if isinstance(v, np.ndarray) else v.item() for v in p]

    def _token_ids(self, raw: np.ndarray) -> np.ndarray:
        vocab = len((self.reader or {}).get("vocab", [])) or None
        if raw.dtype.kind not in "iu":
            raise DataError(f"text data expects integer token ids; got dtype {raw.dtype}")
        ids = raw.astype(np.int64).reshape(-1, raw.shape[-1]) if raw.ndim > 1 else raw.astype(np.int64)[None]
        if vocab is not None and ((ids < 0) | (ids >= vocab)).any():
            raise DataError(f"text data expects token ids in 0..{vocab - 1}; got {int(ids.min())}..{int(ids.max())}")
        return ids


# -------------------------------------------------------------------------------- numeric steps
def _reshape(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    """(N, *shape) from (N, *shape), a flat (N, prod(shape)), a missing size-1 axis, or one sample."""
    shape = tuple(step["shape"])
    size = int(np.prod(shape))
    expected = f"samples of shape {shape} ({size} values each), as (N, {', '.join(map(str, shape))})"
    if x.shape[1:] == shape:
        return x
    squeezed = tuple(d for d in shape if d != 1)
    if x.ndim >= 2 and (x.shape[1:] == squeezed or (x.ndim == 2 and x.shape[1] == size)):
        return x.reshape((len(x), *shape))
    if x.shape in (shape, squeezed) or (x.ndim == 1 and x.size == size):
        return x.reshape((1, *shape))  # one sample without a batch axis
    raise ShapeError(f"the model expects {expected}; got an array of shape {x.shape}")


def _scale(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    return x / step["divide_by"]


def _standardize(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    """(x - mean) / std with the train split's statistics, broadcast as the loader fitted them."""
    return apply_normalization(torch.from_numpy(x), step).numpy()  # float64 throughout


def _layout(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    if step["layout"] == "sequence":
        return np.ascontiguousarray(x.transpose(0, 2, 1))  # (N, C, L) -> (N, L, C)
    return x.reshape(len(x), -1)  # flat: (N, C, L) -> (N, C * L)


_STEPS = {"reshape": _reshape, "scale": _scale, "standardize": _standardize, "layout": _layout}


def unstandardize(p: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Outputs back in the data's units: ``p * std + mean`` (one scalar or per column)."""
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if mean.size == 1:
        mean, std = mean.reshape(()), std.reshape(())
    return p * std + mean


# ------------------------------------------------------------------------------------- readers
def _reader(info: dict[str, Any]) -> dict[str, Any] | None:
    """How files of this data's kind are read, from the loader's ``info``."""
    if info.get("source") == "csv" and "columns" in info:
        return {
            "kind": "csv",
            "columns": info["columns"],
            "target": info.get("target"),
            "categorical": info.get("categorical") or {},
            "one_hot": info.get("categorical_encoding") == "one-hot",
            "sep": info.get("sep", ","),
        }
    if info.get("pixel_max") and info.get("image_size"):
        return {
            "kind": "image",
            "mode": info.get("mode", "L" if info.get("in_channels") == 1 else "RGB"),
            "size": info["image_size"],
            "resize": bool(info.get("resize")),
            "pixel_max": float(info["pixel_max"]),
        }
    if info.get("vocab") and info.get("level") in ("char", "byte"):
        return {"kind": "text", "level": info["level"], "vocab": info["vocab"], "block_size": info.get("block_size")}
    return None


def read_npy(path: Path) -> np.ndarray:
    """A numeric ``.npy`` array, read without pickle."""
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise DataError(f"{path}: expected a .npy file (numpy's format, np.save); its header is not one")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array of numbers ({str(exc).splitlines()[0][:120]})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: expected a numeric array; got dtype {arr.dtype}")
    if arr.size == 0:
        raise DataError(f"{path}: expected at least one sample; got an empty array of shape {arr.shape}")
    return arr


def _read_csv(prep: Preprocessing, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """CSV rows with the training columns (any order, extra columns refused); target optional."""
    from archlab.data.files import category_ids, encode_columns

    pd = require("pandas", "data", "reading CSV files")
    r = prep.reader or {}
    try:
        df = pd.read_csv(path, sep=r.get("sep", ","))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c) for c in df.columns]
    wanted, target = list(r["columns"]), r.get("target")
    missing = [c for c in wanted if c not in df.columns]
    extra = [c for c in df.columns if c not in wanted and c != target]
    if missing or extra:
        raise DataError(
            f"{path}: expected the training columns {wanted} (target {target!r} optional); "
            f"got {list(df.columns)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (extra {extra})" if extra else "")
        )
    if df[wanted].isna().to_numpy().any():
        row = int(np.flatnonzero(df[wanted].isna().to_numpy().any(axis=1))[0])
        raise DataError(f"{path}: data row {row} has a missing value; expected every training column filled")
    x = encode_columns(df, wanted, r.get("categorical") or {}, bool(r.get("one_hot")), str(path))
    y = None
    if target in df.columns:
        col = df[target]
        if prep.class_names is not None:
            y = category_ids(col, prep.class_names, f"{path}: target {target!r}")
        else:
            y = col.to_numpy(dtype=np.float64).reshape(-1, 1)
    return x, y


def _read_images(prep: Preprocessing, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One image file, a folder of images, or a folder of class subfolders (targets by folder name).

    Images are converted to the training colour mode; a run trained with ``resize`` resizes them
    to its size, any other run refuses a different size.
    """
    from archlab.data.pixels import IMAGE_SUFFIXES, image_files, image_pixels, open_image

    r = prep.reader or {}
    labels: list[int | None] = []
    if path.is_dir():
        files = [(p, None) for p in image_files(path)]
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            label = prep.class_names.index(sub.name) if prep.class_names and sub.name in prep.class_names else None
            files += [(p, label) for p in image_files(sub)]
        if not files:
            raise DataError(f"{path}: expected image files ({', '.join(sorted(IMAGE_SUFFIXES))}); found none")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        files = [(path, None)]
    else:
        raise DataError(f"{path}: expected an image file ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder or an .npy")
    size = tuple(r["size"])
    arrays = []
    for f, label in files:
        im = open_image(f)
        if not r.get("resize") and im.size != (size[1], size[0]):
            raise ShapeError(
                f"{f}: the model expects {size[0]}x{size[1]} images (height x width); got {im.size[1]}x{im.size[0]}"
            )
        arrays.append(image_pixels(im, r["mode"], size))
        labels.append(label)
    x = np.stack(arrays)  # (N, C, H, W) pixels 0..255
    if r.get("pixel_max", 255.0) != 255.0:
        x = x * (r["pixel_max"] / 255.0)  # into the data's raw units (digits: 0..16)
    y = np.array(labels, dtype=np.int64) if labels and all(v is not None for v in labels) else None
    return x, y


def _read_text(prep: Preprocessing, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Token ids of a text file cut into the training windows (inputs, next-token targets); text
    shorter than a window is one row."""
    from archlab.data.text import lm_windows

    r = prep.reader or {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 text at byte {exc.start}") from None
    if r["level"] == "byte":
        ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    else:
        index = {ch: i for i, ch in enumerate(r["vocab"])}
        unknown = sorted({ch for ch in text if ch not in index})
        if unknown:
            raise DataError(f"{path}: character(s) {unknown[:10]} are not in the run's vocabulary of {len(index)}")
        ids = np.array([index[ch] for ch in text], dtype=np.int64)
    if len(ids) == 0:
        raise DataError(f"{path}: expected some text; the file is empty")
    block = int(r.get("block_size") or len(ids))
    if len(ids) < block + 1:
        return ids[None], None
    x, y = lm_windows(ids, block, block)
    return x.numpy(), y.numpy()


# ------------------------------------------------------------------------------- descriptions
def _describe_reader(r: dict[str, Any]) -> str:
    if r["kind"] == "csv":
        cats = r.get("categorical") or {}
        how = "one-hot" if r.get("one_hot") else "integer ids"
        cat = f"; categorical {sorted(cats)} as {how}" if cats else ""
        return f"CSV columns {r['columns']} (target {r.get('target')!r}){cat}"
    if r["kind"] == "image":
        h, w = r["size"]
        return f"image files as {r['mode']} {h}x{w}" + (" (resized)" if r.get("resize") else "")
    return f"text as {r['level']} token ids ({len(r['vocab'])} symbols)"


def _describe_step(s: dict[str, Any]) -> str:
    if s["op"] == "reshape":
        return f"x: samples of shape {tuple(s['shape'])}"
    if s["op"] == "scale":
        return f"x = x / {s['divide_by']:g}  (raw values 0..{s['divide_by']:g} to [0, 1])"
    if s["op"] == "standardize":
        skipped = f", except columns {s['skipped']}" if s.get("skipped") else ""
        sampled = f", from {s['sample_size']} of {s['train_size']} samples" if s.get("sample_size") else ""
        return f"x = (x - mean) / std  (train-split statistics per {s.get('over', 'value')}{skipped}{sampled})"
    return f"layout {s['layout']}"


def _choices(bundle: DataBundle, prep: Preprocessing) -> dict[str, Any]:
    """The inferred choices a user should see: target, task, categorical handling, layout, size."""
    info = bundle.info
    c: dict[str, Any] = {"dataset": bundle.name, "modality": bundle.modality, "task": bundle.task}
    if "target" in info:
        c["target column"] = info["target"]
    if info.get("target_normalization"):
        c["target"] = "standardised with train statistics (metrics in those units; predict maps back)"
    if info.get("categorical"):
        c["categorical"] = f"{sorted(info['categorical'])} as {info.get('categorical_encoding', 'ids')}"
    if info.get("class_names"):
        c["classes"] = len(info["class_names"])
    if prep.sample_shape:
        c["input shape"] = prep.sample_shape
    if info.get("image_size"):
        c["image size"] = "x".join(map(str, info["image_size"])) + f" {info.get('mode', '')}".rstrip()
    if info.get("layout"):
        c["layout"] = info["layout"]
    if info.get("vocab"):
        c["vocabulary"] = f"{len(info['vocab'])} {info.get('level', '')} symbols".replace("  ", " ")
    c["preprocessing"] = prep.describe()
    c["splits"] = info.get("split_sizes") or {k: len(v) for k, v in bundle.splits().items()}
    if info.get("streaming"):  # data.streams.choose_streaming's record
        rec = info["streaming"]
        how = "stream='auto'" if rec["chosen_by"] == "auto" else "stream option"
        c["memory"] = (
            f"{'streamed from disk' if rec['streamed'] else 'held in memory'} ({how}; in memory it would need "
            f"about {rec['in_memory_estimate_bytes'] / 1e6:,.0f} MB, threshold {rec['threshold_bytes'] / 1e6:,.0f} MB)"
        )
    return c


def record_preprocessing(bundle: DataBundle) -> Preprocessing:
    """Build the bundle's :class:`Preprocessing`, log the "data" block of every inferred choice,
    and store it in ``bundle.info["preprocessing"]`` (so the run's ``data_info.json`` holds it)."""
    prep = Preprocessing.from_bundle(bundle)
    lines = [f"  {k}: {v}" for k, v in prep.choices.items() if k != "preprocessing"]
    lines += [f"  step: {s}" for s in prep.describe()]
    log.info("data\n%s", "\n".join(lines))
    bundle.info["preprocessing"] = prep.to_json()
    return prep
