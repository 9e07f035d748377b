"""Users' own time series from a CSV: the same windows, gaps and baseline as the bundled series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from archlab.data import load
from archlab.data.timeseries import forecast_bundle
from archlab.errors import DataError

N = 120


def _frame(n: int = N) -> pd.DataFrame:
    t = np.arange(n)
    units = 10 + 3 * np.sin(2 * np.pi * t / 7) + 0.05 * t
    dates = pd.date_range("2021-03-01", periods=n, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame({"date": dates, "units": units, "price": units * 2 + 1})


def _write(tmp_path, df: pd.DataFrame, name: str = "sales.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_series_csv_matches_the_bundled_windows(tmp_path):
    df = _frame()
    b = load(_write(tmp_path, df), task="forecasting", time="date", target="units")
    assert (b.modality, b.task) == ("time_series", "forecasting")
    assert b.info["season"] == 7 and b.info["frequency"] == "daily" and b.info["window"] == 14
    same = forecast_bundle("x", df["units"].to_numpy(), window=14, horizon=1, season=7)
    for split in ("train", "val", "test"):
        got, want = getattr(b, split), getattr(same, split)
        assert torch.equal(got.inputs[0], want.inputs[0]) and torch.equal(got.target, want.target)
    assert b.train.inputs[0].shape[1:] == (14, 1) and b.info["time"][0] == "2021-03-01"


def test_rows_are_sorted_by_time_and_options_pass_through(tmp_path):
    df = _frame()
    path = _write(tmp_path, df.iloc[::-1])
    b = load(path, task="forecasting", time="date", target="price", window=21, horizon=3, season=14)
    assert b.info["series"][0] == pytest.approx(df["price"].iloc[0])
    assert b.train.target.shape[1] == 3 and b.train.inputs[0].shape[1] == 21 and b.info["season"] == 14


def test_time_option_alone_or_task_alone_reads_a_series(tmp_path):
    path = _write(tmp_path, _frame()[["date", "units"]])
    assert load(path, time="date").task == "forecasting"
    assert load(path, task="forecasting").info["time_column"] == "date"  # default: the first column
    assert load(path).modality == "tabular"  # without either, a CSV is still a table


def test_integer_steps_have_no_season(tmp_path):
    df = pd.DataFrame({"year": np.arange(1900, 1900 + N), "v": np.random.default_rng(0).normal(size=N)})
    b = load(_write(tmp_path, df), task="forecasting")
    assert b.info["season"] == 1 and b.info["window"] == 8 and b.info["time"][:2] == ["1900", "1901"]


@pytest.mark.parametrize("how", ["skipped row", "empty cell"])
def test_gaps_raise_then_fill_or_drop(tmp_path, how):
    df = _frame()
    if how == "skipped row":
        df = df.drop(index=[30, 31])
    else:
        df.loc[30:31, "units"] = np.nan
    path = _write(tmp_path, df)
    with pytest.raises(DataError, match=r"2 missing values in column 'units'.*first at 2021-03-31.*fill='interpolate'"):
        load(path, time="date", target="units")
    filled = load(path, time="date", target="units", fill="interpolate")
    series = filled.info["series"]
    assert len(series) == N and filled.info["filled"] == 2
    assert series[30] == pytest.approx(series[29] + (series[32] - series[29]) / 3)  # linear in time
    dropped = load(path, time="date", target="units", dropna=True)
    assert len(dropped.info["series"]) == N - 2 and dropped.info["dropped"] == 2


def test_clear_errors(tmp_path):
    path = _write(tmp_path, _frame())
    with pytest.raises(DataError, match=r"time column 'day' not found; columns are \['date', 'units', 'price'\]"):
        load(path, time="day", target="units")
    with pytest.raises(DataError, match=r"target column 'sales' not found; value columns are \['units', 'price'\]"):
        load(path, time="date", target="sales")
    with pytest.raises(DataError, match=r"several value columns \['units', 'price'\]; pass target="):
        load(path, time="date")

    bad = _frame()
    bad.loc[5, "date"] = "someday"
    with pytest.raises(DataError, match=r"not dates; the first is 'someday' at line 7"):
        load(_write(tmp_path, bad, "d.csv"), time="date", target="units")

    bad = _frame()
    bad["units"] = bad["units"].astype(object)
    bad.loc[7, "units"] = "n/k"
    with pytest.raises(DataError, match=r"column 'units' holds 1 non-numeric value\(s\); the first is 'n/k' at line 9"):
        load(_write(tmp_path, bad, "n.csv"), time="date", target="units")

    with pytest.raises(DataError, match=r"12 rows are too few for window=14"):
        load(_write(tmp_path, _frame(12), "s.csv"), time="date", target="units")

    dup = pd.concat([_frame().iloc[:50], _frame().iloc[49:50]])
    with pytest.raises(DataError, match=r"repeats the timestamp"):
        load(_write(tmp_path, dup, "r.csv"), time="date", target="units")
    with pytest.raises(DataError, match=r"task 'forecasting'; got task='regression'"):
        from archlab.data.series_csv import load_series_csv

        load_series_csv(path, task="regression")


def test_the_seasonal_naive_baseline_reads_the_season(tmp_path):
    from archlab.tasks.forecasting import seasonal_naive

    b = load(_write(tmp_path, _frame()), task="forecasting", time="date", target="units")
    x, y = b.test.inputs[0], b.test.target
    naive = seasonal_naive(x.float(), y.shape[1], b.info["season"], 0, y.ndim)
    # the series is a weekly sine plus a small trend: last week's value is a near-perfect forecast
    weekly = (naive.reshape(y.shape) - y).abs().mean()
    daily = (seasonal_naive(x.float(), y.shape[1], 1, 0, y.ndim).reshape(y.shape) - y).abs().mean()
    assert weekly < daily / 3
