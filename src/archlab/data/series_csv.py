"""Users' own time series: a CSV with a time column and one or more value columns, for forecasting.

``load("sales.csv", task="forecasting", time="date", target="units")`` reads the table, sorts it
by time, checks the timestamps are regular, and hands the target column to
:func:`archlab.data.timeseries.forecast_bundle`: the same chronological split, train-only
standardisation, sliding windows and seasonal-naive baseline as the bundled series.

Gaps are handled as for the bundled ``co2``: a missing value (an empty cell, or a timestamp
missing from an otherwise regular grid, such as a skipped week) raises DataError naming the count
and the first one, unless ``fill="interpolate"`` (linear in time) or ``dropna=True``.

The season of the seasonal-naive baseline comes from the spacing of the timestamps (hourly 24,
daily 7, weekly 52, monthly 12, quarterly 4, otherwise 1) unless ``season=`` is given; the window
defaults to two seasons (at least 8 steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archlab.data.base import DataBundle
from archlab.data.csv_rows import read_csv_frame
from archlab.data.splits import chronological_bounds
from archlab.data.timeseries import forecast_bundle
from archlab.errors import DataError, require

#: (largest spacing in days, season, name): the first row whose spacing is at least the data's.
_SEASONS = (
    (1 / 24 + 1e-9, 24, "hourly"),
    (1 + 1e-9, 7, "daily"),
    (7 + 1e-9, 52, "weekly"),
    (31 + 1e-9, 12, "monthly"),
    (92 + 1e-9, 4, "quarterly"),
)


def _line(i: int) -> int:
    """The file line of data row ``i`` (the header is line 1)."""
    return i + 2


def _parse_time(path: Path, col, name: str):
    """Integer steps (years, indices) stay numbers; anything else must parse as dates."""
    pd = require("pandas", "data", "reading CSV files")
    if pd.api.types.is_integer_dtype(col) or pd.api.types.is_float_dtype(col):
        if col.isna().any():
            i = int(np.flatnonzero(col.isna().to_numpy())[0])
            raise DataError(f"{path}: time column {name!r} is empty at line {_line(i)}")
        return col.to_numpy(dtype=np.float64), False
    text = col.astype(str).str.strip()
    try:
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    except (TypeError, ValueError):
        parsed = pd.to_datetime(text, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: time column {name!r} has {int(bad.sum())} value(s) that are not dates; "
            f"the first is {col.iloc[i]!r} at line {_line(i)}"
        )
    return parsed, True


def _infer_season(step, is_date: bool) -> tuple[int, str]:
    if not is_date:
        return 1, "steps"
    days = step / np.timedelta64(1, "D")
    for limit, season, name in _SEASONS:
        if days <= limit:
            return season, name
    return 1, "yearly or longer"


def load_series_csv(
    path: str | Path,
    *,
    time: str | None = None,
    target: str | None = None,
    task: str = "forecasting",
    window: int | None = None,
    horizon: int = 1,
    season: int | None = None,
    fill: str | None = None,
    dropna: bool = False,
    sep: str = ",",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    normalize: bool = True,
) -> DataBundle:
    """A time series from a CSV: one time column, one or more value columns (one is the target).

    Args:
        time: the time column (default: the first column). Dates in any format pandas reads, or
            integer steps (years, indices).
        target: the value column to forecast (default: the only value column; required when
            there are several).
        task: must be ``forecasting`` (passed through by ``load(..., task="forecasting")``).
        window: input steps per sample (default: two seasons, at least 8).
        horizon: steps forecast per sample.
        season: period of the seasonal-naive baseline (default: from the timestamps' spacing).
        fill: ``"interpolate"`` fills missing values and missing timestamps linearly in time.
        dropna: drop the missing points instead (the gaps between neighbours shrink).

    Returns windows: inputs (N, window, 1) float32, target (N, horizon) float32 (standardised
    with the train part's mean and std), as the bundled series (:mod:`archlab.data.timeseries`).

    Raises:
        DataError: a missing time / target column (naming the columns found), unparsable dates,
            repeated timestamps, non-numeric values, gaps without ``fill`` / ``dropna``, or too few
            rows for the window.
    """
    path = Path(path)
    if task != "forecasting":
        raise DataError(f"{path}: a series CSV loads for task 'forecasting'; got task={task!r}")
    if fill not in (None, "interpolate"):
        raise DataError(f"{path}: fill must be 'interpolate' or None; got {fill!r}")
    df, _ = read_csv_frame(path, sep)  # ragged rows, encoding, duplicate header names: one-line errors
    time, target, values = _pick_columns(path, list(df.columns), time, target)
    s, is_date = _read_series(path, df, time, target)
    info: dict[str, Any] = {"source": "csv", "time_column": time, "target": target, "columns": values}
    s, freq_season = _regular_grid(s, is_date, info)
    s = _fill_gaps(path, s, target, is_date, fill, dropna, info)
    season = int(season) if season is not None else freq_season
    window = int(window) if window is not None else max(2 * season, 8)
    _check_window(path, len(s), window, horizon, season, val_fraction, test_fraction)
    return forecast_bundle(
        path.stem,
        s.to_numpy(),
        window=window,
        horizon=horizon,
        season=season,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        normalize=normalize,
        time=_time_labels(s.index, is_date),
        info=info,
    )


def _pick_columns(path: Path, columns: list[str], time: str | None, target: str | None) -> tuple[str, str, list[str]]:
    """``(time, target, value columns)``: the time column (default: the first) and the target
    among the other columns (default: the only one)."""
    time = columns[0] if time is None else time
    if time not in columns:
        raise DataError(f"{path}: time column {time!r} not found; columns are {columns}")
    values = [c for c in columns if c != time]
    if not values:
        raise DataError(f"{path}: no value column besides the time column {time!r}")
    if target is None:
        if len(values) > 1:
            raise DataError(f"{path}: several value columns {values}; pass target= one of them")
        target = values[0]
    if target not in values:
        raise DataError(f"{path}: target column {target!r} not found; value columns are {values}")
    return time, target, values


def _read_series(path: Path, df, time: str, target: str):
    """``(series, is_date)``: the target's values (float, inf as NaN) indexed by the parsed
    timestamps, sorted by time.

    Raises:
        DataError: unparsable times, non-numeric values, a repeated timestamp or fewer than 3 rows.
    """
    pd = require("pandas", "data", "reading CSV files")
    stamps, is_date = _parse_time(path, df[time], time)
    raw = df[target]
    y = pd.to_numeric(raw, errors="coerce")
    bad = (y.isna() & raw.notna()).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: column {target!r} holds {int(bad.sum())} non-numeric value(s); "
            f"the first is {raw.iloc[i]!r} at line {_line(i)}"
        )
    y = y.astype(np.float64).replace([np.inf, -np.inf], np.nan)
    s = pd.Series(y.to_numpy(), index=pd.Index(stamps)).sort_index()
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()][0]
        raise DataError(f"{path}: time column {time!r} repeats the timestamp {dup}; one row per time step")
    if len(s) < 3:
        raise DataError(f"{path}: {len(s)} rows; a series needs many more rows than the window")
    return s, is_date


def _regular_grid(s, is_date: bool, info: dict[str, Any]):
    """``(series, season)``: the series on a regular grid and the season its spacing implies;
    records ``frequency`` (and ``irregular_spacing``) in ``info``.

    The most common spacing is the step; a longer spacing that is a whole number of steps is a run
    of missing timestamps, reindexed as NaN (then filled or dropped by :func:`_fill_gaps`).
    """
    diffs = np.diff(s.index.to_numpy())
    uniq, counts = np.unique(diffs, return_counts=True)
    step = uniq[int(np.argmax(counts))]
    season, info["frequency"] = _infer_season(step, is_date)
    ratio = diffs / step
    if np.all(np.abs(ratio - np.round(ratio)) < 1e-6) and (ratio > 1).any():
        grid = s.index[0] + step * np.arange(int(round((s.index[-1] - s.index[0]) / step)) + 1)
        s = s.reindex(grid)
    elif not np.allclose(ratio, 1):
        # irregular timestamps (month lengths, leap years) are kept as consecutive steps
        info["irregular_spacing"] = True
    return s, season


def _fill_gaps(path: Path, s, target: str, is_date: bool, fill: str | None, dropna: bool, info: dict[str, Any]):
    """The series with its missing values interpolated or dropped; records ``missing`` (and
    ``filled`` or ``dropped``) in ``info``.

    Raises:
        DataError: missing values with neither ``fill="interpolate"`` nor ``dropna``.
    """
    missing = int(s.isna().sum())
    info["missing"] = missing
    if not missing:
        return s
    if fill == "interpolate":
        info["filled"] = missing
        return s.interpolate(method="index" if not is_date else "time", limit_direction="both")
    if dropna:
        info["dropped"] = missing
        return s.dropna()
    first = _stamp_text(s.index[s.isna().to_numpy()][0], is_date)
    raise DataError(
        f"{path}: {missing} missing values in column {target!r} (empty cells or skipped "
        f"timestamps; first at {first}); pass fill='interpolate' or dropna=True"
    )


def _check_window(
    path: Path, n: int, window: int, horizon: int, season: int, val_fraction: float, test_fraction: float
) -> None:
    """DataError unless ``n`` steps split chronologically leave room for ``window`` + ``horizon``
    in train and ``horizon`` in val and test, with a window of at least one season."""
    train_end, val_end = chronological_bounds(n, val_fraction, test_fraction)
    if season < 1:
        raise DataError(f"{path}: season must be >= 1; got {season}")
    if window < season:
        raise DataError(
            f"{path}: window={window} is shorter than the season {season}; the baseline needs a full season"
        )
    if train_end - horizon < window or n - val_end < horizon or val_end - train_end < horizon:
        need = int(np.ceil((window + horizon + 1) / max(1 - val_fraction - test_fraction, 1e-9)))
        raise DataError(
            f"{path}: {n} rows are too few for window={window} + horizon={horizon} "
            f"(about {need} needed with these split fractions); pass a smaller window="
        )


def _stamp_text(t, is_date: bool) -> str:
    """A timestamp as text; a date at midnight without its time."""
    return str(t.date()) if is_date and t == t.normalize() else str(t)


def _time_labels(index, is_date: bool) -> list[str]:
    """The series' timestamps as text: dates as :func:`_stamp_text`, whole-number steps without ``.0``."""
    if is_date:
        return [_stamp_text(t, True) for t in index]
    return [str(int(t)) if float(t).is_integer() else str(t) for t in index]
