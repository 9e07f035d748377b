"""Datasets: bundled real data, loaders for users' files, splits and normalisation.

``load(name_or_path, **options) -> DataBundle`` is the one entry point::

    load("digits")                          # bundled (scikit-learn), nothing downloaded
    load("ucr:GunPoint", seed=1)            # UCR archive file shipped in sktime
    load("co2", fill="interpolate")         # forecasting windows
    load("shakespeare", block_size=64, max_chars=200_000)
    load("data/train.csv", target="label")  # a user's file (format detected by name)

Shapes by modality (documented in each loader, also recorded in ``info``):

- image: inputs (N, C, H, W) float32; tabular: (N, F) float32; points: (N, 2) float32;
  signal (MNIST-1D, UCR): (N, C, L) float32 — targets (N,) int64 class ids, or (N, 1) float32
  for regression.
- forecasting: inputs (N, window, 1) float32, target (N, horizon) float32.
- text: inputs (N, T) int64, target (N, T) int64 shifted by one token.
- graph: inputs (x (num_nodes, F) float32, edge_index (2, E) int64), target (num_nodes,) int64,
  one bool mask per split.

Common options: ``seed`` (same seed, same split), ``val_fraction``, ``test_fraction`` (where the
dataset has no fixed test split), ``normalize`` (statistics fitted on train only, stored in
``info["normalization"]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from archlab.data.base import DataBundle, Split
from archlab.data.bundled import is_bundled_name, list_datasets, load_bundled
from archlab.errors import DataError


def load(name_or_path: str | os.PathLike, **options: Any) -> DataBundle:
    """Load a bundled dataset by name, or a user's file or folder by path.

    A bundled name wins over a file of the same name in the working directory; pass a path
    with a directory part (``./digits``) or a ``Path`` to read the file instead.

    Signal datasets (``mnist1d``, ``ucr:*``, UCR files) take ``layout="channels"|"sequence"|"flat"``
    to give inputs as (N, C, L), (N, L, C) or (N, C*L) (see :func:`archlab.data.splits.apply_layout`).

    Raises:
        DataError: unknown name (with the closest matches), missing file, bad data, bad option.
        MissingExtraError: the dataset needs an optional package (``pip install 'archlab[data]'``).
    """
    layout = options.pop("layout", None)
    bundle = _load(name_or_path, **options)
    if layout is not None:
        from archlab.data.splits import apply_layout

        apply_layout(bundle, layout)
    return bundle


def _load(name_or_path: str | os.PathLike, **options: Any) -> DataBundle:
    from archlab.data.files import load_path

    if isinstance(name_or_path, str) and is_bundled_name(name_or_path):
        return load_bundled(name_or_path, **options)
    path = Path(name_or_path)
    looks_like_path = isinstance(name_or_path, os.PathLike) or os.sep in str(name_or_path) or path.suffix != ""
    if path.exists() or looks_like_path:
        bundle = load_path(path, **options)
        bundle.info.setdefault(
            "options",
            {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))},
        )
        return bundle
    return load_bundled(str(name_or_path), **options)  # raises with the closest names


__all__ = ["load", "list_datasets", "DataBundle", "Split", "DataError"]
