"""The arrays behind the paper's visual figures: projections of chosen units cropped to their receptive fields
(Fig. 2, 4, 6), and the frequency content of first-layer filters (Fig. 6).

Figures take a `zfjax.network.Network` (a built-in net through `network.from_arch`, or any model). Every unit is
projected (the net's own fast `project`, else `zfjax.deconv.projection.project_fn`) through one jit-compiled, vmapped
function of fixed batch size (`chunk`), so a whole figure's units compile once. A unit's tile is a fixed-size window: the size of its layer's
full receptive field (capped at the image), placed at the unit's clipped receptive field and slid inwards at the
image border, so every tile of a layer has the same shape and holds the unit's whole support.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import numpy as np

from zfjax import network
from zfjax.analyses import topk
from zfjax.deconv import projection
from zfjax.network import models
from zfjax.network.receptive_field import Field, receptive_field


class Tiles(NamedTuple):
    """Units' projections and image patches cropped to the same windows, leading axes as given (e.g. (maps, k))."""
    projections: np.ndarray  # (..., S, S, C) the deconvnet projection inside the window
    patches: np.ndarray  # (..., S, S, C) the image inside the window
    windows: np.ndarray  # (..., 4) int: y0, y1, x0, x1 in image coordinates (may reach outside the image)


@functools.partial(jax.jit, static_argnames=("features", "project", "layer", "rule"))
def _project_units(features, project, variables, x: jax.Array, channels: jax.Array, positions: jax.Array,
                   layer: str, rule: str) -> jax.Array:
    """Project unit (channels[i], positions[i]) of image x[i], for every i (one compiled function per batch size)."""
    def one(image, channel, position):
        if project is not None:
            return project(variables, layer, image[None], channel, position, rule)[0]
        return projection.project_fn(functools.partial(features, variables), image[None], channel, position,
                                     rule=rule)[0]
    return jax.vmap(one)(x, channels, positions)


def project_units(net: network.Network, layer: str, x: np.ndarray, channels, positions, *, chunk: int = 32,
                  rule: str = "deconvnet", variables=None) -> np.ndarray:
    """(U, H, W, C) projections of unit (channels[i], positions[i] = (h, w)) of `layer` in image x[i].

    Units go through in batches of `chunk` (the last one padded), so any number of units compiles once. The
    net's own `project` is used where it has one, else `zfjax.deconv.projection.project_fn`; `variables` replace the
    net's (e.g. one snapshot of a training run).
    """
    variables = net.variables if variables is None else variables
    features = net.feature_map(layer)
    x = np.asarray(x, np.float32)
    channels, positions = np.asarray(channels, np.int32), np.asarray(positions, np.int32)
    if x.ndim != 4 or channels.shape != (len(x),) or positions.shape != (len(x), 2):
        raise ValueError(f"need x (U, H, W, C), channels (U,), positions (U, 2); got {x.shape}, {channels.shape}, "
                         f"{positions.shape}")
    if not len(x):
        return np.zeros((0, *x.shape[1:]), np.float32)
    shape = jax.eval_shape(features, variables, jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)).shape[1:]
    if (channels.min() < 0 or channels.max() >= shape[2] or positions.min() < 0
            or positions[:, 0].max() >= shape[0] or positions[:, 1].max() >= shape[1]):
        raise ValueError(f"a channel or position is outside {layer}'s {shape[0]}x{shape[1]}x{shape[2]} map")
    out = []
    for i in range(0, len(x), chunk):
        pad = chunk - len(x[i:i + chunk])
        parts = [np.pad(a[i:i + chunk], ((0, pad),) + ((0, 0),) * (a.ndim - 1)) for a in (x, channels, positions)]
        out.append(np.asarray(_project_units(features, net.project, variables, *parts, layer=layer,
                                             rule=rule))[:chunk - pad])
    return np.concatenate(out)


class ArchField(NamedTuple):
    """A built-in net's receptive fields (`receptive_field.receptive_field`), with the interface of `Field`."""
    arch: models.Arch
    layer: str

    def window(self, position) -> tuple[int, int, int, int]:
        return receptive_field(self.arch, self.layer, tuple(position))

    def size(self) -> tuple[int, int]:
        """Its full (unclipped) receptive field, capped at the input size."""
        h, w, c = self.arch.input_shape
        big = dataclasses.replace(self.arch, input_shape=(8 * h, 8 * w, c))  # the center unit is clipped nowhere
        map_h, map_w = big.shapes()[self.layer][:2]
        y0, y1, x0, x1 = receptive_field(big, self.layer, (map_h // 2, map_w // 2))
        return min(y1 - y0, h), min(x1 - x0, w)


_FIELDS: dict[tuple, Field] = {}  # (features, input shape) -> its Field: the geometry does not depend on values


def field(net: network.Network, layer: str) -> ArchField | Field:
    """The receptive fields of `layer`'s units: a built-in net's own geometry, else from the layer's jaxpr."""
    features = net.feature_map(layer)
    if isinstance(features, network.ArchLayer):
        return ArchField(features.arch, layer)
    key = (features, tuple(net.input_shape))
    if key not in _FIELDS:
        if len(_FIELDS) >= 64:
            _FIELDS.pop(next(iter(_FIELDS)))
        _FIELDS[key] = Field(functools.partial(features, net.variables), net.input_shape)
    return _FIELDS[key]


def windows(fields: ArchField | Field, positions, input_hw: tuple[int, int]) -> np.ndarray:
    """(U, 4) fixed-size tiles (y0, y1, x0, x1) of units at `positions` (U, 2): each covers the unit's receptive
    field; where that is clipped by the border, the tile slides to keep ``fields.size()`` and reaches outside."""
    size = fields.size()
    out = []
    for position in np.asarray(positions, np.int64).reshape(-1, 2):
        seen = fields.window(tuple(position))
        tile = []
        for lo, hi, s, n in ((seen[0], seen[1], size[0], input_hw[0]), (seen[2], seen[3], size[1], input_hw[1])):
            start = 0 if s >= n else hi - s if lo == 0 and hi < n else lo
            tile += [start, start + s]
        out.append(tile)
    return np.asarray(out, np.int64).reshape(-1, 4)


def crop(images: np.ndarray, tiles: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """(U, S, S, C): image i cut to tile i (y0, y1, x0, x1, all the same size); outside the image is `fill`."""
    images, tiles = np.asarray(images), np.asarray(tiles, np.int64)
    if len(images) != len(tiles):
        raise ValueError(f"{len(images)} images but {len(tiles)} tiles")
    if not len(tiles):
        return images[:, :0, :0]
    h, w = tiles[0, 1] - tiles[0, 0], tiles[0, 3] - tiles[0, 2]
    if np.any(tiles[:, 1] - tiles[:, 0] != h) or np.any(tiles[:, 3] - tiles[:, 2] != w):
        raise ValueError("all tiles must have the same size")
    padded = np.pad(images, ((0, 0), (h, h), (w, w), (0, 0)), constant_values=fill)
    return np.stack([p[y0 + h:y1 + h, x0 + w:x1 + w] for p, (y0, y1, x0, x1) in zip(padded, tiles)])


def unit_tiles(net: network.Network, layer: str, x: np.ndarray, display: np.ndarray, channels, positions, *,
               rule: str = "deconvnet", fill: float = 0.5, variables=None) -> Tiles:
    """Project unit (channels[i], positions[i]) of image x[i] and cut the projection and `display[i]` (the image as
    shown, e.g. ``net.to_display(x)``) to the unit's tile; `fill` pads the image outside its border."""
    positions = np.asarray(positions, np.int64).reshape(-1, 2)
    projections = project_units(net, layer, x, channels, positions, rule=rule, variables=variables)
    tiles = windows(field(net, layer), positions, tuple(net.input_shape[:2]))
    return Tiles(crop(projections, tiles), crop(display, tiles, fill), tiles)


def top_tiles(net: network.Network, top: topk.TopK, channels, images, layer: str, *, rule: str = "deconvnet",
              variables=None) -> Tiles:
    """Tiles of the top-k units of each of `channels` (Fig. 2), leading axes (len(channels), k).

    `images(indices)` returns ``(inputs, display)`` for those dataset indices: the network inputs and the images as
    shown (in [0, 1]).
    """
    channels = np.asarray(channels, np.int64)
    index = top.image[channels].ravel()
    x, display = images(index)
    flat = unit_tiles(net, layer, x, display, np.repeat(channels, top.image.shape[1]),
                      np.stack([top.h[channels].ravel(), top.w[channels].ravel()], 1), rule=rule,
                      variables=variables)
    lead = (len(channels), top.image.shape[1])
    return Tiles(*(a.reshape(lead + a.shape[1:]) for a in flat))


__all__ = ["Tiles", "project_units", "ArchField", "field", "windows", "crop", "unit_tiles", "top_tiles"]
