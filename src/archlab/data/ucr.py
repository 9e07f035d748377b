"""Time-series classification in the UCR/UEA formats: sktime's shipped archive files and users'.

``ucr:<Name>`` reads ``sktime/datasets/data/<Name>/<Name>_TRAIN.ts`` and ``_TEST.ts`` straight
from the installed package (no download, and without importing sktime, which is slow to import).
The same parser reads a user's ``.ts`` file; ``.tsv`` is the UCR 2018 layout (label, then values,
tab-separated). A ``*_TRAIN`` file with a ``*_TEST`` sibling keeps that fixed split.

Shapes: inputs ``(N, C, L)`` float32 (channels first; C=1 for univariate series), standardised
per channel with train statistics; classification targets ``(N,)`` int64 with the archive's
labels remapped to ``0..K-1`` (``info["class_names"]`` holds the original labels, in the
``@classLabel`` order of the header); regression problems (``@targetLabel``) give ``(N, 1)`` float32.
Unequal-length or timestamped series are refused with a DataError naming the line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from archlab.data.base import DataBundle
from archlab.data.splits import supervised_bundle
from archlab.errors import DataError, MissingExtraError


def sktime_data_dir() -> Path:
    """Folder of the datasets shipped with sktime; MissingExtraError if it is not installed."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "'sktime' is needed for the UCR datasets but is not installed; install it with: pip install 'archlab[data]'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def ucr_names() -> list[str]:
    """Names of the UCR/UEA problems shipped with sktime (those with a ``_TRAIN.ts`` file)."""
    try:
        root = sktime_data_dir()
    except MissingExtraError:
        return []
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}_TRAIN.ts").exists())


def read_ts(path: str | Path) -> tuple[np.ndarray, list[str], dict]:
    """Parse a ``.ts`` file into X (N, C, L) float64, the raw labels, and its header."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    header: dict[str, str] = {}
    rows: list[list[np.ndarray]] = []
    labels: list[str] = []
    in_data = False
    line_nos: list[int] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(("#", "%")):  # sktime files also comment with %
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{path}, line {line_no}: expected an @header or @data before values")
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
            else:
                header[key] = value.strip()
            continue
        if header.get("timestamps", "false").lower() == "true":
            raise DataError(f"{path}: timestamped series (@timeStamps true) are not supported")
        has_label = (
            header.get("classlabel", "false").split(" ")[0].lower() == "true"
            or header.get("targetlabel", "false").lower() == "true"
        )
        fields = line.split(":")
        if has_label:
            labels.append(fields[-1].strip())
            fields = fields[:-1]
        dims = []
        for d, f in enumerate(fields):
            try:
                vals = np.array([float(v) if v.strip() != "?" else np.nan for v in f.split(",")])
            except ValueError:
                raise DataError(f"{path}, line {line_no}, dimension {d}: values are not numbers") from None
            dims.append(vals)
        rows.append(dims)
        line_nos.append(line_no)
    if not in_data:
        raise DataError(f"{path}: no @data section{' (empty file)' if not text.strip() else ''}")
    if not rows:
        raise DataError(f"{path}: the @data section holds no series")
    n_dims = len(rows[0])
    length = len(rows[0][0])
    for dims, line_no in zip(rows, line_nos):
        if len(dims) != n_dims:
            raise DataError(f"{path}, line {line_no}: {len(dims)} dimensions; line {line_nos[0]} has {n_dims}")
        for d, vals in enumerate(dims):
            if len(vals) != length:
                raise DataError(
                    f"{path}, line {line_no}, dimension {d}: length {len(vals)} differs from {length} "
                    "(unequal-length series are not supported)"
                )
    x = np.array(rows, dtype=np.float64)  # (N, C, L)
    _check_nan(x, path, line_nos)
    return x, labels, header


def _check_nan(x: np.ndarray, path: Path, line_nos: list[int]) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        i, c, t = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"{path}, line {line_nos[i]}, dimension {c}, position {t}: missing or non-finite value "
            f"({int(bad.sum())} in the file)"
        )


def read_tsv(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Parse a UCR 2018 ``.tsv``: one series per line, the label first, tab-separated."""
    path = Path(path)
    lines = [(i, ln) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if ln.strip()]
    if not lines:
        raise DataError(f"{path}: file is empty")
    labels, rows = [], []
    width = None
    for line_no, ln in lines:
        parts = ln.strip().split("\t") if "\t" in ln else ln.split(",")
        if width is None:
            width = len(parts)
        elif len(parts) != width:
            raise DataError(
                f"{path}, line {line_no}: {len(parts)} fields; line {lines[0][0]} has {width} (ragged rows)"
            )
        if len(parts) < 2:
            raise DataError(f"{path}, line {line_no}: expected a label and at least one value")
        labels.append(parts[0].strip())
        try:
            rows.append([float(v) for v in parts[1:]])
        except ValueError:
            raise DataError(f"{path}, line {line_no}: values are not numbers") from None
    x = np.array(rows, dtype=np.float64)[:, None, :]
    _check_nan(x, path, [i for i, _ in lines])
    return x, labels


def _read_any(path: Path) -> tuple[np.ndarray, list[str], dict]:
    if path.suffix.lower() == ".tsv":
        x, y = read_tsv(path)
        return x, y, {}
    return read_ts(path)


def _label_ids(labels: list[str], order: list[str], path: Path) -> np.ndarray:
    index = {c: i for i, c in enumerate(order)}
    ids = np.empty(len(labels), dtype=np.int64)
    for row, lab in enumerate(labels):
        if lab not in index:
            raise DataError(f"{path}: label {lab!r} of series {row} is not one of the declared classes {order}")
        ids[row] = index[lab]
    return ids


def load_ucr_file(
    path: str | Path,
    *,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
) -> DataBundle:
    """A UCR/UEA ``.ts`` or ``.tsv`` file (see the module docstring for shapes).

    A ``X_TRAIN`` file whose ``X_TEST`` sibling exists keeps that fixed test split and carves
    val out of train by ``seed``; otherwise val and test are drawn by ``seed``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    x, labels, header = _read_any(path)
    test_path = path.with_name(path.name.replace("_TRAIN", "_TEST")) if "_TRAIN" in path.name else None
    fixed = None
    if test_path is not None and test_path.exists():
        xt, lt, _ = _read_any(test_path)
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{test_path}: series of shape {xt.shape[1:]} differ from the train file's {x.shape[1:]}")
        fixed = (xt, lt)
    regression = header.get("targetlabel", "false").lower() == "true"
    info = {
        "in_channels": int(x.shape[1]),
        "seq_len": int(x.shape[2]),
        "problem": header.get("problemname", path.stem.replace("_TRAIN", "")),
    }
    if not labels:
        raise DataError(f"{path}: the series carry no labels (@classLabel false); nothing to learn from")
    if regression:
        try:
            y = np.array(labels, dtype=np.float64).reshape(-1, 1)
            yt = None if fixed is None else np.array(fixed[1], dtype=np.float64).reshape(-1, 1)
        except ValueError:
            raise DataError(f"{path}: @targetLabel values must be numbers") from None
        task = "regression"
        info["out_features"] = 1
    else:
        declared = header.get("classlabel", "").split()[1:]
        if declared:
            order = declared
        else:  # .tsv: sorted union of the labels seen, numerically when they are numbers
            seen = set(labels) | set(fixed[1] if fixed else [])
            try:
                order = sorted(seen, key=float)
            except ValueError:
                order = sorted(seen)
        y = _label_ids(labels, order, path)
        yt = None if fixed is None else _label_ids(fixed[1], order, test_path)
        task = "classification"
        info.update(num_classes=len(order), class_names=order)
    return supervised_bundle(
        name or str(path),
        "time_series",
        task,
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=0.0 if fixed else test_fraction,
        normalize=normalize,
        norm_axes=(0, 2),
        norm_over="channel",
        fixed_test=None if fixed is None else (fixed[0], yt),
        info=info,
    )


def load_ucr(name: str, *, seed: int = 0, val_fraction: float = 0.1, normalize: bool = True) -> DataBundle:
    """``ucr:<Name>`` from sktime's shipped files (e.g. ``ucr:GunPoint``: 50 train / 150 test,
    length 150), with the archive's fixed train/test split; val is carved out of train by ``seed``.
    """
    import difflib

    names = ucr_names() if importlib.util.find_spec("sktime") else []
    root = sktime_data_dir()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join('ucr:' + c for c in close)}?" if close else ""
        raise DataError(f"unknown UCR dataset 'ucr:{name}'; shipped with sktime: {', '.join(names)}{hint}")
    bundle = load_ucr_file(
        root / name / f"{name}_TRAIN.ts", name=f"ucr:{name}", seed=seed, val_fraction=val_fraction, normalize=normalize
    )
    bundle.info["source"] = f"sktime/datasets/data/{name}"
    return bundle
