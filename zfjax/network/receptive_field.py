"""Receptive fields: which input pixels a unit of a feature map can see (used to crop patches and projections).

`receptive_field` walks a built-in net's convs and pools; `Field` does the same for any function from images to a
feature map, from its jaxpr (`zfjax.deconv.intervals`): convolutions (strides, padding, dilation), pools, pads, slices
and elementwise operations are followed exactly, and a flatten or a dense layer means the whole image.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

from zfjax.deconv import intervals
from zfjax.deconv import program as pg
from zfjax.network import models


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
        below = hw if i == 0 else sizes[arch.convs[i - 1].output_name]
        rows, cols = (_down(r, c.kernel, c.stride, c.padding, n) for r, n in zip((rows, cols), below))
    return rows[0], rows[1] + 1, cols[0], cols[1] + 1


def _down(span: tuple[int, int], kernel: int, stride: int, padding: int, size_below: int) -> tuple[int, int]:
    """Inclusive range of the map below that a sliding window layer reads for output units `span`, clipped."""
    lo, hi = span[0] * stride - padding, span[1] * stride - padding + kernel - 1
    return max(lo, 0), min(hi, size_below - 1)


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


def run_stage(arch: models.Arch, params: models.Params, stage: Stage, x: jax.Array, *, padding: int,
              ceil_mode: bool) -> jax.Array:
    """One stage's forward as `models.apply` runs it (conv + ReLU, or max pool + LCN), with its padding and pooling
    mode given (occlusion runs pre-padded windows: 0 and False)."""
    if stage.pool:
        return models.pool_forward(arch, stage.lcn, x, ceil_mode)[0]
    return models.conv_forward(params, arch.conv(stage.name), x, padding)


class Field:
    """Receptive fields of the units of ``fn``: images (N, H, W, C) of `input_shape` -> an (N, h, w, c) map."""

    def __init__(self, fn: Callable, input_shape: Sequence[int], dtype=np.float32):
        self.input_shape = tuple(int(s) for s in input_shape)
        prog, _ = pg.trace(fn, jax.ShapeDtypeStruct((1, *self.input_shape), dtype))
        if len(prog.outvars) != 1 or len(prog.outvars[0].aval.shape) != 4:
            raise ValueError(f"the function must return one (N, h, w, c) map, got "
                             f"{[tuple(v.aval.shape) for v in prog.outvars]}")
        self.map_shape = tuple(prog.outvars[0].aval.shape[1:])
        self._image = prog.invars[0]
        self._walker = intervals.Walker(prog)

    def _span(self, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[int, int, int, int]:
        need = self._walker.needs([((0, 0), rows, cols, (0, self.map_shape[2] - 1))]).get(id(self._image))
        if need is None:  # the map does not depend on the image
            return 0, 0, 0, 0
        (y0, y1), (x0, x1) = need[1], need[2]
        return int(y0), int(y1) + 1, int(x0), int(x1) + 1

    def window(self, position: Sequence[int]) -> tuple[int, int, int, int]:
        """Input window ``(y0, y1, x0, x1)`` (half-open) seen by the units at `position` = (h, w) (of any channel:
        the union of the channels' fields where they differ, as after a concatenation of branches)."""
        h, w = self.map_shape[:2]
        row, col = (int(p) for p in position)
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"position {tuple(position)} is outside the {h}x{w} map")
        return self._span((row, row), (col, col))

    def size(self) -> tuple[int, int]:
        """(height, width) of the largest window: the size of a tile that holds any unit's whole field."""
        h, w = self.map_shape[:2]
        rows = max(y1 - y0 for y0, y1, _, _ in (self._span((i, i), (0, 0)) for i in range(h)))
        cols = max(x1 - x0 for _, _, x0, x1 in (self._span((0, 0), (j, j)) for j in range(w)))
        return rows, cols


__all__ = ["receptive_field", "Stage", "stages", "run_stage", "Field"]
