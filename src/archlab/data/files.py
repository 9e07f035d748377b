"""Users' own files through ``archlab.data.load(path, ...)``: format detection, CSV and NumPy arrays.

Detection (override with ``kind=``):

==========================================  ===========  =====================================
path                                        kind         loader
==========================================  ===========  =====================================
``*.csv``                                   ``csv``      :func:`load_csv` (tabular)
``*.csv`` with ``task="forecasting"`` or     ``series``   ``series_csv.load_series_csv``
``time=``                                                (a time series)
``*.npy`` / ``*.npz``                       ``array``    :func:`load_array`
``*.npy`` of 1-D integers, ``*.bin``         ``tokens``   ``text.load_token_file`` (language
                                                         modelling on a ready token file)
``*idx3-ubyte[.gz]`` or a folder of them    ``idx``      ``images.load_idx`` (MNIST)
``data_batch_*`` / ``test_batch`` / folder  ``cifar``    ``images.load_cifar`` (CIFAR-10)
``*.ts`` / ``*.tsv``                        ``ucr``      ``ucr.load_ucr_file``
``*.edges`` / ``*.edgelist``                ``graph``    ``graphs.load_edge_list``
``*.txt``                                   ``text``     ``text.load_text_file`` (``kind="graph"``
                                                         reads it as an edge list)
any other folder                            ``images``   ``images.load_image_folder``
==========================================  ===========  =====================================

``stream=True`` / ``False`` / ``"auto"`` (``.npy`` arrays, token files, text, image folders) reads the
data from disk batch by batch instead of holding it in memory (see :mod:`archlab.data.streams`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archlab.data.base import DataBundle
from archlab.data.csv_rows import read_csv_frame
from archlab.data.splits import encode_labels, supervised_bundle
from archlab.data.streams import FLOAT_BYTES_IN_MEMORY, NpySource, choose_streaming, supervised_stream_bundle
from archlab.data.token_cache import read_npy_header
from archlab.errors import DataError, require

log = logging.getLogger("archlab.data")

KINDS = ("csv", "series", "array", "idx", "cifar", "ucr", "graph", "text", "images", "tokens")


def detect_kind(path: Path) -> str:
    """The file kind of ``path`` by its name (see the module table)."""
    name = path.name.lower()
    if path.is_dir():
        entries = [p.name.lower() for p in path.iterdir()]
        if any("idx3-ubyte" in e for e in entries):
            return "idx"
        if any(e.startswith("data_batch") for e in entries):
            return "cifar"
        return "images"
    if "idx3-ubyte" in name or "idx3_ubyte" in name:
        return "idx"
    if name.startswith(("data_batch", "test_batch")):
        return "cifar"
    suffix = path.suffix.lower()
    table = {
        ".csv": "csv",
        ".npy": "array",
        ".npz": "array",
        ".ts": "ucr",
        ".tsv": "ucr",
        ".edges": "graph",
        ".edgelist": "graph",
        ".txt": "text",
        ".bin": "tokens",
    }
    if suffix == ".npy" and _is_token_array(path):
        return "tokens"
    if suffix in table:
        return table[suffix]
    raise DataError(
        f"{path}: cannot tell the format from the name; pass kind= one of {', '.join(KINDS)} "
        "(.csv, .npy/.npz, MNIST idx3-ubyte, CIFAR data_batch_*, .ts/.tsv, .edges/.edgelist, .txt, image folder)"
    )


def load_path(path: str | Path, kind: str | None = None, **options: Any) -> DataBundle:
    """Load a user's file or folder; ``kind`` overrides the detection by name."""
    from archlab.data import graphs, images, series_csv, text, ucr

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    kind = kind or detect_kind(path)
    aliases = {
        "tabular": "csv",
        "npy": "array",
        "npz": "array",
        "mnist": "idx",
        "ts": "ucr",
        "tsv": "ucr",
        "edges": "graph",
        "edgelist": "graph",
        "image": "images",
        "folder": "images",
        "timeseries": "series",
    }
    kind = aliases.get(kind, kind)
    if kind == "csv" and (options.get("task") == "forecasting" or "time" in options):
        kind = "series"  # a CSV read as a time series (a time column, value columns)
    loaders: dict[str, Callable[..., DataBundle]] = {
        "csv": load_csv,
        "series": series_csv.load_series_csv,
        "array": load_array,
        "idx": images.load_idx,
        "cifar": images.load_cifar,
        "ucr": ucr.load_ucr_file,
        "graph": graphs.load_edge_list,
        "text": text.load_text_file,
        "images": images.load_image_folder,
        "tokens": text.load_token_file,
    }
    if kind not in loaders:
        raise DataError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    from archlab.data.bundled import call_with_options

    return call_with_options(loaders[kind], f"{path} ({kind})", path, **options)


# --------------------------------------------------------------------------------------- CSV
def encode_columns(df, features: list[str], categories: dict[str, list[str]], one_hot: bool, what: str) -> np.ndarray:
    """The (N, F) float64 feature matrix of a table: numeric columns as they are, categorical ones
    (``categories`` maps each to its values in id order) as ids or one-hot blocks.

    Training and prediction both call this, so a CSV row becomes the same features at both times.

    Raises:
        DataError: a category not seen in training, naming the column and the known values.
    """
    blocks = []
    for c in features:
        if c not in categories:
            blocks.append(df[c].to_numpy(dtype=np.float64)[:, None])
            continue
        ids = category_ids(df[c], categories[c], f"{what}: column {c!r}")
        blocks.append(np.eye(len(categories[c]))[ids] if one_hot else ids[:, None].astype(np.float64))
    return np.concatenate(blocks, axis=1)


def category_ids(column, known: list[str], what: str) -> np.ndarray:
    """(N,) int64 ids of a column's values (as text) in ``known``; DataError naming unseen values."""
    index = {v: i for i, v in enumerate(known)}
    values = column.astype(str).to_numpy()
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise DataError(f"{what} has value(s) {unknown[:5]} not seen in training; known: {known}")
    return np.array([index[v] for v in values], dtype=np.int64)


def _is_categorical(series, max_categories: int) -> bool:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return True
    return pd.api.types.is_integer_dtype(series) and series.nunique() <= max_categories


def _integer_valued(col: Any) -> bool:
    values = col.to_numpy(dtype=np.float64)
    return bool(np.isfinite(values).all() and (values == np.round(values)).all())


def infer_target_task(col: Any, max_classes: int = 20) -> tuple[str, str]:
    """``("classification" | "regression", why)`` for a target column, as scikit-learn's
    ``type_of_target`` reads it: text, booleans and integer values (also integer-valued floats
    such as 0.0/1.0) with at most ``max_classes`` distinct values are class labels; other numbers
    are a regression target."""
    pd = require("pandas", "data", "reading CSV files")
    distinct = int(col.nunique())
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        return "classification", f"non-numeric values, {distinct} distinct"
    if (pd.api.types.is_integer_dtype(col) or _integer_valued(col)) and distinct <= max_classes:
        return "classification", f"{distinct} distinct integer values (<= {max_classes})"
    kind = "integer" if pd.api.types.is_integer_dtype(col) or _integer_valued(col) else "real"
    return "regression", f"{kind} values, {distinct} distinct"


def load_csv(
    path: str | Path,
    *,
    target: str | None = None,
    categorical: Sequence[str] | None = None,
    task: str | None = None,
    dropna: bool = False,
    max_categories: int = 10,
    max_classes: int = 20,
    one_hot: bool = False,
    sep: str = ",",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    normalize_target: bool | None = None,
) -> DataBundle:
    """A CSV table with a header row; one column is the target.

    Args:
        target: the target column (default: the last column).
        categorical: the feature columns to treat as categorical, overriding detection. By
            default a column is categorical when it is non-numeric (text, bool) or holds
            integers with at most ``max_categories`` (10) distinct values.
        task: ``classification`` or ``regression``; by default classification when the target
            is non-numeric or holds integers with at most ``max_classes`` (20) distinct values.
        dropna: drop rows holding a missing or infinite value (count in ``info["dropped"]``)
            instead of raising DataError naming the column and line.
        one_hot: expand categorical columns into one-hot columns instead of integer ids.
        normalize_target: standardise a regression target with train statistics (default: yes
            for regression; ``info["target_normalization"]``). Losses and metrics are then in
            standardised units, as for the bundled series; ``predict`` maps values back.

    Returns inputs (N, F) float32: numeric columns standardised with train statistics,
    categorical columns as integer ids 0..K-1 (not standardised; ``info["categorical"]`` maps
    each to its categories in id order; ``info["categorical_index"]`` gives their positions).
    Target (N,) int64 class ids (``class_names``) or (N, 1) float32 for regression.
    """
    path = Path(path)
    df, line_of = read_csv_frame(path, sep)
    target = _target_column(path, list(df.columns), target)
    info: dict[str, Any] = {"source": "csv", "target": target}
    df, info["dropped"] = _drop_missing_rows(path, df, line_of, dropna)
    features = [c for c in df.columns if c != target]
    if not features:
        raise DataError(f"{path}: no feature columns besides the target {target!r}")
    cats = _categorical_columns(path, df, features, categorical, max_categories)
    encoded = _encode_features(path, df, features, cats, one_hot)
    task, y, target_info = _encode_target(path, df[target], target, task, max_classes)
    info.update(target_info)
    info.update(
        in_features=int(encoded.x.shape[1]),
        columns=features,
        sep=sep,
        feature_names=encoded.names,
        categorical=encoded.categories,
        categorical_index=encoded.categorical_index,
        categorical_encoding="one-hot" if one_hot else "ids",
    )
    return supervised_bundle(
        str(path),
        "tabular",
        task,
        encoded.x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        skip_norm=encoded.categorical_index,
        # a raw target in the hundreds makes a default learning rate crawl (R2 -2.3 against 0.90
        # after 200 steps on a house-price table): regression targets are standardised unless asked not to
        normalize_target=task == "regression" if normalize_target is None else normalize_target,
        info=info,
    )


def _target_column(path: Path, columns: list[str], target: str | None) -> str:
    """The target column's name (default: the last column), checked against the header."""
    if len(set(columns)) != len(columns):
        raise DataError(f"{path}: duplicate column names in the header {columns}")
    target = columns[-1] if target is None else target
    if target not in columns:
        raise DataError(f"{path}: target column {target!r} not found; columns are {columns}")
    return target


def _drop_missing_rows(path: Path, df: Any, line_of: list[int], dropna: bool) -> tuple[Any, int]:
    """The table without rows holding a missing or infinite value, and how many were dropped.

    Raises:
        DataError: such a row without ``dropna`` (naming the column and the file line), or no row left.
    """
    pd = require("pandas", "data", "reading CSV files")
    numeric = df.select_dtypes(include=[np.number])
    bad = df.isna() | pd.DataFrame(
        np.isinf(numeric.to_numpy(dtype=np.float64)), columns=numeric.columns, index=df.index
    ).reindex(columns=df.columns, fill_value=False)
    bad_rows = bad.to_numpy().any(axis=1)
    if not bad_rows.any():
        return df, 0
    if not dropna:
        rows, cols = np.nonzero(bad.to_numpy())
        r, c = int(rows[0]), int(cols[0])
        raise DataError(
            f"{path}: column {df.columns[c]!r} has a missing or infinite value at line {line_of[r]} "
            f"(data row {r}); {int(bad_rows.sum())} rows are affected; pass dropna=True to drop them"
        )
    df = df[~bad_rows].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{path}: every row holds a missing value; nothing left after dropna")
    return df, int(bad_rows.sum())


def _categorical_columns(
    path: Path, df: Any, features: list[str], categorical: Sequence[str] | None, max_categories: int
) -> list[str]:
    """The feature columns read as categories: ``categorical`` when given (checked), else detected."""
    pd = require("pandas", "data", "reading CSV files")
    if categorical is None:
        detected = [c for c in features if _is_categorical(df[c], max_categories)]
        for c in detected:
            _warn_if_free_text(path, df[c])
        return detected
    unknown = [c for c in categorical if c not in features]
    if unknown:
        raise DataError(f"{path}: categorical columns {unknown} are not feature columns {features}")
    cats = list(categorical)
    for c in features:
        if c not in cats and not pd.api.types.is_numeric_dtype(df[c]):
            raise DataError(f"{path}: column {c!r} is not numeric; list it in categorical=[...]")
    return cats


def _warn_if_free_text(path: Path, column: Any) -> None:
    """Say so when a text column holds mostly distinct values (free text, or an identifier): read
    as a category, each value is its own category and tells nothing about a row not seen."""
    import pandas as pd

    distinct, rows = int(column.nunique()), len(column)
    textual = not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if textual and distinct > max(20, rows // 2):
        log.warning(
            "%s: column %r holds %d distinct strings in %d rows (free text or an identifier?); it is read "
            "as categories, one per value, which says nothing about new rows: remove the column to "
            "train on the others (text classification reads token sequences, not CSV columns)",
            path.name,
            column.name,
            distinct,
            rows,
        )


@dataclass
class _EncodedFeatures:
    """A table's feature matrix and how its columns map to it."""

    x: np.ndarray  # (N, F) float64
    names: list[str]  # one per column of x (``col=value`` for a one-hot column)
    categories: dict[str, list[str]]  # categorical column -> its values in id order
    categorical_index: list[int]  # the columns of x that hold categories (not standardised)


def _encode_features(path: Path, df: Any, features: list[str], cats: list[str], one_hot: bool) -> _EncodedFeatures:
    """Numeric columns as they are, ``cats`` as integer ids or one-hot blocks (:func:`encode_columns`)."""
    names: list[str] = []
    cat_index: list[int] = []
    cat_map: dict[str, list[str]] = {}
    for c in features:
        if c in cats:
            cat_map[c] = encode_labels(df[c].astype(str).to_numpy(), f"{path}: column {c!r}")[1]
            width = len(cat_map[c]) if one_hot else 1
            cat_index.extend(range(len(names), len(names) + width))
            names.extend([f"{c}={v}" for v in cat_map[c]] if one_hot else [c])
        else:
            names.append(c)
    x = encode_columns(df, features, cat_map, one_hot, str(path))
    return _EncodedFeatures(x, names, cat_map, cat_index)


def _encode_target(
    path: Path, y_col: Any, target: str, task: str | None, max_classes: int
) -> tuple[str, np.ndarray, dict[str, Any]]:
    """``(task, y, info)``: the task (inferred when None), the target as class ids (N,) or values
    (N, 1), and what ``info`` records about it.

    Raises:
        DataError: a non-numeric regression target, or a task other than classification / regression.
    """
    pd = require("pandas", "data", "reading CSV files")
    info: dict[str, Any] = {}
    if task is None:
        task, why = infer_target_task(y_col, max_classes)
        info["task_inferred"] = f"{task}: {why}"
        log.info("%s: target %r read as %s (%s; pass task=... to choose)", path.name, target, task, why)
    if task == "classification":
        if pd.api.types.is_float_dtype(y_col) and _integer_valued(y_col):  # 0.0/1.0 -> classes "0"/"1"
            y_col = y_col.astype(np.int64)
        y, class_names = encode_labels(
            y_col.astype(str).to_numpy() if not pd.api.types.is_integer_dtype(y_col) else y_col.to_numpy(),
            f"{path}: target {target!r}",
        )
        info.update(num_classes=len(class_names), class_names=class_names)
    elif task == "regression":
        if not pd.api.types.is_numeric_dtype(y_col):
            raise DataError(f"{path}: task='regression' needs a numeric target; column {target!r} is {y_col.dtype}")
        y = y_col.to_numpy(dtype=np.float64).reshape(-1, 1)
        info["out_features"] = 1
    else:
        raise DataError(f"task must be 'classification' or 'regression'; got {task!r}")
    return task, y, info


# ------------------------------------------------------------------------------ NPY / NPZ
_NORM = {2: ("tabular", (0,), "feature"), 3: ("time_series", (0, 2), "channel"), 4: ("image", (0, 2, 3), "channel")}


def _np_load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which is never allowed
        raise DataError(f"{path}: cannot read without pickle ({exc}); store numeric arrays") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy/.npz file ({exc})") from None


def _is_token_array(path: Path) -> bool:
    """A ``.npy`` holding a 1-D integer array (token ids), told from its header alone."""
    try:
        shape, dtype, _ = read_npy_header(path)
    except DataError:
        return False
    return len(shape) == 1 and dtype.kind in "iu"


def _check_x(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    _check_x_layout(x, path, key)
    x = x.astype(np.float64)
    _check_x_finite(x, path, key)
    return x


def _check_x_layout(x: np.ndarray, path: Path, key: str) -> None:
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: array {key!r} must be numeric; got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(f"{path}: array {key!r} must be (N, features...) with at least 2 dims; got shape {x.shape}")
    if x.size == 0:
        raise DataError(
            f"{path}: array {key!r} is empty (shape {x.shape}); it needs at least one sample and one feature"
        )


def _check_x_finite(x: np.ndarray, path: Path, key: str, rows: int | None = None) -> None:
    """DataError counting NaN/inf values and naming the first row; reads ``rows`` rows at a time
    (a memory-mapped array stays on disk)."""
    if x.dtype.kind != "f":
        return
    rows = len(x) if rows is None else rows
    count, first = 0, None
    for start in range(0, len(x), rows):
        bad = ~np.isfinite(np.asarray(x[start : start + rows]))
        if bad.any():
            count += int(bad.sum())
            first = start + int(np.argwhere(bad)[0][0]) if first is None else first
    if count:
        raise DataError(f"{path}: array {key!r} holds {count} NaN/inf values; the first in row {first}")


def _check_y(y: np.ndarray, n: int, path: Path, key: str, task: str | None) -> tuple[np.ndarray, str]:
    if len(y) != n:
        raise DataError(f"{path}: {key!r} has {len(y)} rows but the inputs have {n}")
    if task == "regression":
        if y.dtype.kind not in "fiu":
            raise DataError(f"{path}: {key!r} must be numeric for regression; got dtype {y.dtype}")
        y = y.astype(np.float64).reshape(n, -1)
        if not np.isfinite(y).all():
            raise DataError(f"{path}: {key!r} holds NaN/inf in row {int(np.argwhere(~np.isfinite(y))[0][0])}")
        return y, "regression"
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(
            f"{path}: {key!r} must be a 1-D array of integer class ids 0..K-1; got shape {y.shape} dtype {y.dtype} "
            "(pass task='regression' for real-valued targets)"
        )
    if len(y) and y.min() < 0:
        i = int(np.flatnonzero(y < 0)[0])
        raise DataError(f"{path}: {key!r} has label {int(y[i])} at row {i}; class ids must be >= 0")
    return y.astype(np.int64), "classification"


def load_array(
    path: str | Path,
    *,
    labels: str | Path | None = None,
    x_key: str = "x",
    y_key: str = "y",
    task: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
    stream: bool | str = "auto",
) -> DataBundle:
    """NumPy arrays: ``.npz`` with ``x`` (and optionally ``y``, ``x_test``, ``y_test``), or an ``.npy``
    of inputs with an optional ``labels=`` ``.npy``. Read with ``allow_pickle=False``.

    ``stream`` (``.npy`` only): memory-map the inputs and read them batch by batch (True), hold
    them in memory (False), or choose by their size (``"auto"``); labels are held in memory and
    normalisation is fitted on a sample of at most 1,024 train rows.

    The layout of ``x`` sets the modality and normalisation: (N, F) tabular per feature, (N, C, L)
    signal per channel, (N, C, H, W) image per channel (train statistics). ``y`` must hold integer
    class ids >= 0 (classification, (N,) int64) unless ``task="regression"`` ((N, k) float32).
    Without ``y`` the bundle has no target; its default task is ``reconstruction`` (an autoencoder).
    """
    path = Path(path)
    fixed = None
    if path.suffix.lower() != ".npz":
        shape, dtype, _ = read_npy_header(path)
        estimate = float(np.prod(shape, dtype=np.float64)) * (FLOAT_BYTES_IN_MEMORY + dtype.itemsize)
        choice = choose_streaming(stream, estimate, str(path))
        if choice["streamed"]:
            return _stream_array(path, labels, task, y_key, seed, val_fraction, test_fraction, normalize, choice)
    elif stream is True:
        raise DataError(f"{path}: only .npy files can be streamed (memory-mapped); save the inputs with np.save")
    if path.suffix.lower() == ".npz":
        with _np_load(path) as z:
            keys = list(z.keys())
            if x_key not in keys:
                raise DataError(f"{path}: no array {x_key!r}; arrays are {keys} (pass x_key=...)")
            x = _check_x(z[x_key], path, x_key)
            y = z[y_key] if y_key in keys else None
            if f"{x_key}_test" in keys:
                xt = _check_x(z[f"{x_key}_test"], path, f"{x_key}_test")
                yt = z[f"{y_key}_test"] if f"{y_key}_test" in keys else None
                fixed = (xt, yt)
    else:
        x = _check_x(_np_load(path), path, "x")
        y = None if labels is None else _np_load(Path(labels))
    kind = None
    if y is not None:
        y, kind = _check_y(y, len(x), path, y_key, task)
    if fixed is not None:
        if fixed[0].shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: {x_key}_test rows have shape {fixed[0].shape[1:]}; {x_key} rows {x.shape[1:]}")
        if (fixed[1] is None) != (y is None):
            raise DataError(f"{path}: give both {y_key!r} and {y_key}_test, or neither")
        if fixed[1] is not None:
            fixed = (fixed[0], _check_y(fixed[1], len(fixed[0]), path, f"{y_key}_test", task)[0])
    modality, axes, over = _NORM.get(x.ndim, ("array", tuple(range(x.ndim)), "all"))
    info = _array_info(x.shape, y, kind, fixed)
    if path.suffix.lower() != ".npz":
        info["streaming"] = choice
    return supervised_bundle(
        str(path),
        modality,
        kind or "reconstruction",
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=0.0 if fixed else test_fraction,
        normalize=normalize,
        norm_axes=axes,
        norm_over=over,
        fixed_test=fixed,
        info=info,
    )


def _array_info(shape: tuple[int, ...], y: np.ndarray | None, kind: str | None, fixed) -> dict[str, Any]:
    """``info`` of an array dataset: its layout (features, channels, length, image size) and classes."""
    info: dict[str, Any] = {"source": "numpy"}
    if len(shape) == 2:
        info["in_features"] = int(shape[1])
    elif len(shape) in (3, 4):
        info["in_channels"] = int(shape[1])
        if len(shape) == 3:
            info["seq_len"] = int(shape[2])
        else:
            info["image_size"] = [int(shape[2]), int(shape[3])]
    if kind == "classification":
        k = int(max(y.max(), fixed[1].max() if fixed else 0)) + 1
        info.update(num_classes=k, class_names=[str(i) for i in range(k)])
    elif kind == "regression":
        info["out_features"] = int(y.shape[1])
    return info


def _stream_array(
    path: Path,
    labels: str | Path | None,
    task: str | None,
    y_key: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    normalize: bool,
    choice: dict[str, Any],
) -> DataBundle:
    """:func:`load_array` on a memory-mapped ``.npy``: the same checks, splits and statistics
    (fitted on a bounded sample of train), with rows read batch by batch."""
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which is never allowed
        raise DataError(f"{path}: cannot read without pickle ({exc}); store numeric arrays") from None
    _check_x_layout(x, path, "x")
    row_values = max(1, int(np.prod(x.shape[1:])))
    _check_x_finite(x, path, "x", rows=max(1, (8 << 20) // row_values))  # about 8 M values per read
    y, kind = (None, None) if labels is None else _check_y(_np_load(Path(labels)), len(x), path, y_key, task)
    modality, axes, over = _NORM.get(x.ndim, ("array", tuple(range(x.ndim)), "all"))
    info = {**_array_info(x.shape, y, kind, None), "input_shape": list(x.shape[1:]), "streaming": choice}
    return supervised_stream_bundle(
        str(path),
        modality,
        kind or "reconstruction",
        len(x),
        y,
        lambda rows, target, stats: NpySource(path, rows, target, stats),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        norm_axes=axes,
        norm_over=over,
        info=info,
    )
