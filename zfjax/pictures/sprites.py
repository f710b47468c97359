"""Sprite sheets: many small tiles packed into one PNG, so that a page showing thousands of them loads a few files.

Tiles are 8-bit pixels of one size; tile (row, column) of a sheet lies at ``y = row * (h + gap)``,
``x = column * (w + gap)``, `gap` pixels of `fill` between tiles. `pixels` is the one way float tiles in [0, 1]
become those 8-bit pixels (rounded, and shrunk with PIL's box filter when larger than a given size), so a reader
can render a reference the same way and compare it with a sheet pixel for pixel.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

from zfjax import files
from zfjax.pictures import plots


def pixels(tiles: np.ndarray, max_side: int = 0) -> np.ndarray:
    """Tiles (..., h, w, C) in [0, 1] (C = 1 or 3) -> uint8 (..., h', w', C): ``round(255 * v)``; tiles whose
    longer side exceeds `max_side` (> 0) are shrunk with a box filter to fit it, keeping their aspect ratio."""
    tiles = np.asarray(tiles, np.float32)
    if tiles.ndim < 3 or tiles.shape[-1] not in (1, 3):
        raise ValueError(f"tiles must be (..., h, w, 1 or 3), got shape {tiles.shape}")
    out = np.rint(np.clip(tiles, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w, c = out.shape[-3:]
    size = fitted((h, w), max_side)
    if size == (h, w):
        return out
    flat = out.reshape(-1, h, w, c)
    small = [np.asarray(Image.fromarray(t[..., 0] if c == 1 else t).resize(size[::-1], Image.BOX)) for t in flat]
    return np.stack(small).reshape(*out.shape[:-3], *size, c)


def fitted(size: tuple[int, int], max_side: int = 0) -> tuple[int, int]:
    """The (h, w) a tile of `size` has after `pixels` (shrunk to fit `max_side` when that is > 0)."""
    h, w = (int(s) for s in size)
    if max_side <= 0 or max(h, w) <= max_side:
        return h, w
    return max(1, round(h * max_side / max(h, w))), max(1, round(w * max_side / max(h, w)))


def sheet(tiles: np.ndarray, gap: int = 1, fill: int = 255) -> np.ndarray:
    """uint8 tiles (rows, columns, h, w, C) laid out as one (H, W, C) sheet, `fill` between them."""
    tiles = np.asarray(tiles)
    if tiles.dtype != np.uint8:
        raise ValueError(f"sheet tiles must be uint8 pixels (see `pixels`), got {tiles.dtype}")
    return plots.mosaic(tiles.astype(np.float32), gap, float(fill)).astype(np.uint8)


def tile(sheet_pixels: np.ndarray, row: int, column: int, size: tuple[int, int], gap: int = 1) -> np.ndarray:
    """The (h, w, C) tile at (row, column) of a sheet of tiles of `size` (h, w)."""
    h, w = size
    y, x = row * (h + gap), column * (w + gap)
    return np.asarray(sheet_pixels)[y:y + h, x:x + w]


def save(path: str | os.PathLike, sheet_pixels: np.ndarray) -> pathlib.Path:
    """Atomically write a uint8 (H, W, 1 or 3) sheet as PNG (grey when it has one channel)."""
    a = np.asarray(sheet_pixels)
    image = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    with files.atomic_path(path) as tmp:
        image.save(tmp, format="png", optimize=False)
    return pathlib.Path(path)


def load(path: str | os.PathLike) -> np.ndarray:
    """A PNG sheet as uint8 (H, W, C), C = 1 for grey."""
    with Image.open(path) as image:
        a = np.asarray(image if image.mode == "L" else image.convert("RGB"))
    return a[..., None] if a.ndim == 2 else a


__all__ = ["pixels", "fitted", "sheet", "tile", "save", "load"]
