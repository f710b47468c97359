"""Receptive fields: which input pixels a unit of a conv or pool map can see (used to crop patches and projections)."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

from zfjax import models


def receptive_field(arch: models.Arch, layer: str, position: tuple[int, int], *,
                    input_hw: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """Input window ``(y0, y1, x0, x1)`` (half-open ends) seen by the unit at `position` = (h, w) of `layer`.

    Walks down from `layer` through each pool (window, stride) and conv (kernel, stride, padding), clipping to the
    real map at every step, so padding never widens the result. `input_hw` defaults to ``arch.input_shape[:2]``.
    """
    hw = tuple(arch.input_shape[:2]) if input_hw is None else tuple(int(s) for s in input_hw)
    sizes = _map_sizes(arch, hw)
    if layer not in sizes:
        raise ValueError(f"no receptive field for layer {layer!r}; {arch.name} has conv/pool maps {list(sizes)}")
    h, w = sizes[layer]
    row, col = (int(p) for p in position)
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"position {tuple(position)} is outside the {h}x{w} map of {layer}")
    rows, cols = (row, row), (col, col)  # inclusive ranges in the current map
    top = next(i for i, c in enumerate(arch.convs) if layer in (c.name, c.pool_name))
    for i in reversed(range(top + 1)):
        c = arch.convs[i]
        conv_hw = sizes[c.name]
        if c.pool and (i < top or layer == c.pool_name):
            rows, cols = (_down(r, arch.pool_window, arch.pool_stride, 0, n) for r, n in zip((rows, cols), conv_hw))
        below = hw if i == 0 else sizes[_output_name(arch.convs[i - 1])]
        rows, cols = (_down(r, c.kernel, c.stride, c.padding, n) for r, n in zip((rows, cols), below))
    return rows[0], rows[1] + 1, cols[0], cols[1] + 1


def _down(span: tuple[int, int], kernel: int, stride: int, padding: int, size_below: int) -> tuple[int, int]:
    """Inclusive range of the map below that a sliding window layer reads for output units `span`, clipped."""
    lo, hi = span[0] * stride - padding, span[1] * stride - padding + kernel - 1
    return max(lo, 0), min(hi, size_below - 1)


def _output_name(c: models.Conv) -> str:
    """Name of the map a conv block hands to the next one (its pool if it has one)."""
    return c.pool_name if c.pool else c.name


def _map_sizes(arch: models.Arch, hw: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """(H, W) of every conv and pool map for an input of size `hw`."""
    shapes = dataclasses.replace(arch, input_shape=(*hw, arch.input_shape[2])).shapes()
    return {name: s[:2] for name, s in shapes.items() if len(s) == 3}


class Stage(NamedTuple):
    """One spatial step of the net: a conv (+ReLU) or a pool (+LCN); `source` is its input activation (None: image)."""
    name: str
    source: str | None
    kernel: int
    stride: int
    pad: int
    pool: bool
    lcn: bool


def stages(arch: models.Arch) -> tuple[Stage, ...]:
    """The conv and pool steps of `arch`, in forward order (shared by occlusion's and deconv's cone windows)."""
    out, source = [], None
    for c in arch.convs:
        out.append(Stage(c.name, source, c.kernel, c.stride, c.padding, False, False))
        source = c.name
        if c.pool:
            out.append(Stage(c.pool_name, source, arch.pool_window, arch.pool_stride, 0, True, c.lcn and arch.lcn))
            source = c.pool_name
    return tuple(out)


__all__ = ["receptive_field", "Stage", "stages"]
