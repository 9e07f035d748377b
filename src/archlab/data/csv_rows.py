"""Reading a CSV file's rows defensively: every row has the header's field count, the header's
names are unique, the text is UTF-8; each failure is one line naming the file and line."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from archlab.errors import DataError, require


def scan_csv(path: Path, sep: str) -> list[int]:
    """Check every row has the header's field count; return the file line of each data row."""
    lines: list[int] = []
    header = None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue  # blank lines are skipped, as pandas does
                if header is None:
                    header = row
                    check_header(path, header)
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}, line {reader.line_num}: {len(row)} fields; the header has {len(header)} (ragged rows)"
                    )
                lines.append(reader.line_num)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}, line {reader.line_num + 1}: not UTF-8 text ({exc.reason}); is it a CSV file?"
            ) from None
        except csv.Error as exc:  # NUL bytes, a quote left open, a field past the size limit
            raise DataError(f"{path}, line {reader.line_num}: not parseable as CSV ({exc})") from None
    if header is None:
        raise DataError(f"{path}: file is empty")
    if not lines:
        raise DataError(f"{path}: a header but no data rows")
    return lines


def read_csv_frame(path: Path, sep: str) -> tuple[Any, list[int]]:
    """A CSV file as a pandas DataFrame with text column names, after :func:`scan_csv` has
    checked its rows; also returns the file line of each data row (for error messages).

    Raises:
        DataError: ragged rows, bad encoding, duplicate header names, or a file pandas cannot parse.
    """
    pd = require("pandas", "data", "reading CSV files")
    line_of = scan_csv(path, sep)
    try:
        df = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as CSV ({exc})") from None
    df.columns = [str(c) for c in df.columns]
    return df, line_of


def check_header(path: Path, header: list[str]) -> None:
    """Column names must be unique: pandas would silently rename a duplicate (``a``, ``a.1``)."""
    names = [c for c in header if c.strip()]  # pandas names blank ones Unnamed: i
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise DataError(f"{path}, line 1: duplicate column names {dupes} in the header; rename them")
