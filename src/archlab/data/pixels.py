"""Reading image files: which files are images, decoding one with PIL, its pixels as an array.

Shared by the in-memory image loaders (:mod:`archlab.data.images`), the lazily decoded image
folders (:mod:`archlab.data.streams`) and prediction on raw files (:mod:`archlab.data.preprocess`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archlab.errors import DataError, require

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def open_image(path: Path):
    """A loaded PIL image; DataError if the file is not a readable image."""
    Image = require("PIL.Image", "data", "reading images")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except Exception as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def image_pixels(im, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """(C, H, W) float64 pixels 0..255 of a PIL image in ``mode``, resized to ``size`` (H, W) if given."""
    from PIL import Image

    im = im.convert(mode)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float64)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
