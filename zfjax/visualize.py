"""The arrays behind the paper's visual figures: projections of chosen units cropped to their receptive fields
(Fig. 2, 4, 6), and the frequency content of first-layer filters (Fig. 6).

Every unit is projected with `deconv.project` through one jit-compiled, vmapped function of fixed batch size
(`chunk`), so a whole figure's units compile once. A unit's tile is a fixed-size window: the size of its layer's
full receptive field (capped at the image), placed at the unit's clipped receptive field and slid inwards at the
image border, so every tile of a layer has the same shape and holds the unit's whole support.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import numpy as np

from zfjax import deconv, models, topk
from zfjax.receptive_field import receptive_field


class Tiles(NamedTuple):
    """Units' projections and image patches cropped to the same windows, leading axes as given (e.g. (maps, k))."""
    projections: np.ndarray  # (..., S, S, C) the deconvnet projection inside the window
    patches: np.ndarray  # (..., S, S, C) the image inside the window
    windows: np.ndarray  # (..., 4) int: y0, y1, x0, x1 in image coordinates (may reach outside the image)


@functools.partial(jax.jit, static_argnames=("arch", "layer", "rule"))
def _project_units(arch: models.Arch, params: models.Params, x: jax.Array, channels: jax.Array,
                   positions: jax.Array, layer: str, rule: str) -> jax.Array:
    """Project unit (channels[i], positions[i]) of image x[i], for every i (one compiled function per batch size)."""
    def one(image, channel, position):
        return deconv.project(arch, params, image[None], layer, channel, position=position, rule=rule)[0]
    return jax.vmap(one)(x, channels, positions)


def project_units(arch: models.Arch, params: models.Params, x: np.ndarray, layer: str, channels, positions, *,
                  chunk: int = 32, rule: str = "deconvnet") -> np.ndarray:
    """(U, H, W, C) projections of unit (channels[i], positions[i] = (h, w)) of `layer` in image x[i].

    Units go through in batches of `chunk` (the last one padded), so any number of units compiles once.
    """
    x = np.asarray(x, np.float32)
    channels, positions = np.asarray(channels, np.int32), np.asarray(positions, np.int32)
    if x.ndim != 4 or channels.shape != (len(x),) or positions.shape != (len(x), 2):
        raise ValueError(f"need x (U, H, W, C), channels (U,), positions (U, 2); got {x.shape}, {channels.shape}, "
                         f"{positions.shape}")
    if layer not in deconv.projectable_layers(arch):
        raise ValueError(f"cannot project from layer {layer!r}; {arch.name} has "
                         f"{list(deconv.projectable_layers(arch))}")
    shape = arch.shapes()[layer]
    if len(x) and (channels.min() < 0 or channels.max() >= shape[2] or positions.min() < 0
                   or positions[:, 0].max() >= shape[0] or positions[:, 1].max() >= shape[1]):
        raise ValueError(f"a channel or position is outside {layer}'s {shape[0]}x{shape[1]}x{shape[2]} map")
    out = []
    for i in range(0, len(x), chunk):
        pad = chunk - len(x[i:i + chunk])
        parts = [np.pad(a[i:i + chunk], ((0, pad),) + ((0, 0),) * (a.ndim - 1)) for a in (x, channels, positions)]
        out.append(np.asarray(_project_units(arch, params, *parts, layer=layer, rule=rule))[:chunk - pad])
    return np.concatenate(out) if out else np.zeros((0, *x.shape[1:]), np.float32)


def window_size(arch: models.Arch, layer: str) -> tuple[int, int]:
    """(height, width) of a tile of `layer`: its full (unclipped) receptive field, capped at the input size."""
    h, w, c = arch.input_shape
    big = dataclasses.replace(arch, input_shape=(8 * h, 8 * w, c))  # the center unit is clipped nowhere
    map_h, map_w = big.shapes()[layer][:2]
    y0, y1, x0, x1 = receptive_field(big, layer, (map_h // 2, map_w // 2))
    return min(y1 - y0, h), min(x1 - x0, w)


def windows(arch: models.Arch, layer: str, positions) -> np.ndarray:
    """(U, 4) fixed-size tiles (y0, y1, x0, x1) of units at `positions` (U, 2): each covers the unit's receptive
    field; where that is clipped by the border, the tile slides to keep `window_size` and reaches outside."""
    size = window_size(arch, layer)
    out = []
    for position in np.asarray(positions, np.int64).reshape(-1, 2):
        field = receptive_field(arch, layer, tuple(position))
        tile = []
        for lo, hi, s, n in ((field[0], field[1], size[0], arch.input_shape[0]),
                             (field[2], field[3], size[1], arch.input_shape[1])):
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


def unit_tiles(arch: models.Arch, params: models.Params, x: np.ndarray, display: np.ndarray, layer: str, channels,
               positions, *, rule: str = "deconvnet", fill: float = 0.5) -> Tiles:
    """Project unit (channels[i], positions[i]) of image x[i] and cut the projection and `display[i]` (the image as
    shown, e.g. `to_display(x)`) to the unit's tile; `fill` pads the image outside its border."""
    positions = np.asarray(positions, np.int64).reshape(-1, 2)
    projections = project_units(arch, params, x, layer, channels, positions, rule=rule)
    tiles = windows(arch, layer, positions)
    return Tiles(crop(projections, tiles), crop(display, tiles, fill), tiles)


def top_tiles(arch: models.Arch, params: models.Params, top: topk.TopK, channels, images, layer: str, *,
              rule: str = "deconvnet") -> Tiles:
    """Tiles of the top-k units of each of `channels` (Fig. 2), leading axes (len(channels), k).

    `images(indices)` returns ``(inputs, display)`` for those dataset indices: the network inputs and the images as
    shown (in [0, 1]).
    """
    channels = np.asarray(channels, np.int64)
    index = top.image[channels].ravel()
    x, display = images(index)
    flat = unit_tiles(arch, params, x, display, layer, np.repeat(channels, top.image.shape[1]),
                      np.stack([top.h[channels].ravel(), top.w[channels].ravel()], 1), rule=rule)
    lead = (len(channels), top.image.shape[1])
    return Tiles(*(a.reshape(lead + a.shape[1:]) for a in flat))


def to_display(x: np.ndarray, mean: np.ndarray, scale: float) -> np.ndarray:
    """Network inputs ``(pixel - mean) * scale`` back to pixels in [0, 1]; `mean` (any H, W >= the input's, or one
    value per channel) is center-cropped to the input."""
    x, mean = np.asarray(x, np.float32), np.asarray(mean, np.float32)
    if mean.ndim == 3:
        h, w = x.shape[-3:-1]
        top, left = (mean.shape[0] - h) // 2, (mean.shape[1] - w) // 2
        mean = mean[top:top + h, left:left + w]
    return np.clip((x / scale + mean) / 255.0, 0.0, 1.0)


def radial_spectrum(filters: np.ndarray, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, power): each filter (HWIO, I summed) zero-padded to `size`, its 2-D power spectrum averaged
    over rings of equal radial frequency (cycles/pixel, 0 to 0.5 * sqrt(2) in the corners); power is (O, bins),
    normalized to sum 1 per filter."""
    f = np.asarray(filters, np.float64)
    if f.ndim != 4 or f.shape[0] > size or f.shape[1] > size:
        raise ValueError(f"filters must be HWIO no larger than size={size}, got shape {f.shape}")
    f = f - f.mean(axis=(0, 1), keepdims=True)  # the DC term says nothing about the filter's pattern
    power = (np.abs(np.fft.fft2(f, s=(size, size), axes=(0, 1))) ** 2).sum(2)  # (size, size, O)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    ring = np.rint(np.hypot(fy, fx) * size).astype(int)
    bins = int(ring.max()) + 1
    sums = np.stack([np.bincount(ring.ravel(), power[..., o].ravel(), bins) for o in range(f.shape[3])])
    radial = sums / np.bincount(ring.ravel(), minlength=bins)
    total = radial.sum(1, keepdims=True)
    return np.arange(bins) / size, radial / np.where(total > 0, total, 1.0)


def mean_frequency(filters: np.ndarray, size: int = 32) -> np.ndarray:
    """(O,) each filter's power-weighted mean radial frequency (cycles/pixel): low = smooth, high = fine detail."""
    freqs, power = radial_spectrum(filters, size)
    return power @ freqs


__all__ = ["Tiles", "project_units", "window_size", "windows", "crop", "unit_tiles", "top_tiles", "to_display",
           "radial_spectrum", "mean_frequency"]
