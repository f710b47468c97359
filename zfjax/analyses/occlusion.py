"""Occlusion sensitivity (the paper's Fig. 7): slide a grey square over an image and map what the network says.

For every position of the square (its top-left corner at rows 0, stride, 2*stride, ... while it fits, same for
columns) `occlusion_maps` returns p(true label), the most probable label, and the total activation of the strongest
feature map of a layer, for a built-in net or any `zfjax.network.Network` (a Flax model, a plain-JAX function).
Two paths compute the same numbers:

- ``method="brute"`` (any model): every occluded image goes through the network, in batches of positions.
- ``method="incremental"`` (built-in nets; ``"auto"`` takes it there): the square only changes activations inside its receptive-field cone. The
  unoccluded forward runs once; for each position only a fixed-size window per layer is recomputed from the cached
  maps (the previous layer's new window written over them), then the last map is patched and the fc layers finish.
  One grid row of positions is a batch (`lax.map` over rows): its rows share a traced offset, its columns are
  static, so windows move by static slices and pads instead of vmapped gathers and scatters, which XLA:CPU runs
  element by element. Windows are sized from the exact interval arithmetic of each conv (zero
  padding, stride) and pool (ceil-mode partial windows), so edges are exact; LCN works per pixel across maps, so it
  needs no margin.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from zfjax import network
from zfjax.network import models
from zfjax.network import receptive_field as rf

Array = jax.Array
METHODS = ("auto", "incremental", "brute")
HEAD_BATCH = 512
"""Positions whose fc layers run as one batch in the incremental path: the fc weights are read once per batch, not
once per grid row (a row's few positions made the fc layers memory-bound)."""


class Maps(NamedTuple):
    """Occlusion maps, each (rows, cols): entry [i, j] is for the square's top-left corner at (i*stride, j*stride)."""
    prob_true: np.ndarray
    top_label: np.ndarray
    feature: np.ndarray
    channel: int


def grid(n: int, patch: int, stride: int) -> np.ndarray:
    """Top-left offsets of the square along one axis: 0, stride, 2*stride, ... while the square fits in `n`."""
    return np.arange(0, n - patch + 1, stride)


def cone_windows(arch: models.Arch, axis: int, offsets: np.ndarray,
                 patch: int) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Per stage along `axis`: a static window length and, per offset, the window start covering every changed unit.

    An output unit o of a (kernel k, stride s, padding p) step reads inputs [o*s - p, o*s - p + k); it changes iff
    that meets the changed input interval [a, b). Windows are widened to the largest such interval and kept inside
    the map, so recomputing one always covers what changed.
    """
    shapes = arch.shapes()
    a, b = offsets, offsets + patch
    sizes, starts = [], []
    for st in rf.stages(arch):
        n_out = shapes[st.name][axis]
        lo = np.maximum(0, -((st.kernel - 1 - a - st.pad) // st.stride))
        hi = np.minimum(n_out, (b - 1 + st.pad) // st.stride + 1)
        hi = np.maximum(hi, lo)
        length = int(max(1, np.max(hi - lo)))
        sizes.append(length)
        starts.append(np.clip(lo, 0, n_out - length).astype(np.int32))
        a, b = lo, hi
    return tuple(sizes), starts


def _overlay(region: Array, window: Array, dy: Array, dxs: Sequence[int]) -> Array:
    """`region` (B, RH, RW, C) with each `window[b]` (LH, LW, C) written at rows dy + ..., columns dxs[b] + ....

    The row offset is a traced scalar shared by the batch, the column offsets are static; either may be negative or
    run past the end (the part outside `region` is dropped). Columns move by static pads, rows by one scalar dynamic
    slice: no gather or scatter, which are slow on CPU under `vmap`.
    """
    b, rh, rw, _ = region.shape
    lh, lw = window.shape[1:3]
    cols = jnp.stack([_shift_columns(window[i], dx, rw) for i, dx in enumerate(dxs)]).astype(region.dtype)
    # Region row r takes window row r - dy: padded by rh on both sides, that is row r - dy + rh.
    tall = jnp.pad(cols, ((0, 0), (rh, rh), (0, 0), (0, 0)))
    placed = lax.dynamic_slice_in_dim(tall, rh - dy, rh, axis=1)
    rows = jnp.arange(rh)[None, :, None, None] - dy
    target = np.arange(rw)[None, :] - np.asarray(dxs)[:, None]
    keep = ((target >= 0) & (target < lw))[:, None, :, None]  # static: the columns the window covers
    return jnp.where((rows >= 0) & (rows < lh) & keep, placed, region)


def _shift_columns(window: Array, dx: int, width: int) -> Array:
    """(LH, LW, C) -> (LH, width, C): window column j at column dx + j, zeros elsewhere, cut to [0, width)."""
    lo, hi = dx, width - dx - window.shape[1]
    window = window[:, max(0, -lo):window.shape[1] - max(0, -hi)]
    return jnp.pad(window, ((0, 0), (max(0, lo), max(0, hi)), (0, 0)))


def _columns(band: Array, starts: Sequence[int], width: int) -> Array:
    """Stack the static column slices band[:, s:s + width] -> (len(starts), rows, width, C)."""
    return jnp.stack([band[:, s:s + width] for s in starts])


def _canvas(stage: rf.Stage, x: Array, n_out: tuple[int, int]) -> Array:
    """A stage's input map (HWC) padded as the stage pads it: zeros around for a conv, -inf after for a ceil pool."""
    if not stage.pool:
        return jnp.pad(x, ((stage.pad, stage.pad), (stage.pad, stage.pad), (0, 0)))
    extra = [max(0, (o - 1) * stage.stride + stage.kernel - n) for o, n in zip(n_out, x.shape[:2])]
    return jnp.pad(x, ((0, extra[0]), (0, extra[1]), (0, 0)), constant_values=-jnp.inf)


def _step(arch: models.Arch, params: models.Params, stage: rf.Stage, region: Array) -> Array:
    """Run one stage on an HWC region without padding (the region carries it)."""
    return rf.run_stage(arch, params, stage, region[None], padding=0, ceil_mode=False)[0]


def _channel_sum(act: Array) -> Array:
    """Total activation of every map: sum over batch and positions -> (C,)."""
    return jnp.sum(act, axis=tuple(range(act.ndim - 1)))


class _Cache(NamedTuple):
    """The unoccluded forward as the incremental path reads it."""
    canvases: tuple[Array, ...]  # each stage's input map, padded as the stage pads it
    feature_map: Array  # (H, W, 1): the chosen channel of `layer`
    last: Array  # the last conv stage's output map
    channel: Array


@functools.partial(jax.jit, static_argnames=("arch", "layer"))
def _prepare(arch: models.Arch, params: models.Params, image: Array, *, layer: str) -> _Cache:
    """Run the unoccluded image once. A separate jit, so that the padded canvases exist as buffers."""
    stages = rf.stages(arch)
    shapes = arch.shapes()
    full = models.apply(arch, params, image[None])
    channel = jnp.argmax(_channel_sum(full.acts[layer]))
    canvases = tuple(_canvas(st, image if st.source is None else full.acts[st.source][0], shapes[st.name][:2])
                     for st in stages)
    feature_map = lax.dynamic_index_in_dim(full.acts[layer][0], channel, axis=2)
    return _Cache(canvases, feature_map, full.acts[stages[-1].name][0], channel)


@functools.partial(jax.jit, static_argnames=("arch", "layer", "patch", "sizes", "cols", "batch_size"))
def _incremental(arch: models.Arch, params: models.Params, cache: _Cache, fill: Array, ys: Array,
                 win_ys: tuple[Array, ...], *, layer: str, patch: int, sizes: tuple[tuple[int, int], ...],
                 cols: tuple[tuple[int, ...], ...], batch_size: int) -> tuple[Array, Array]:
    """Logits (rows, cols, classes) and feature totals (rows, cols), recomputing only each square's cone.

    One grid row at a time (`ys` (rows,) the square's row offsets, `win_ys[i]` (rows,) stage i's window rows), its
    positions in static column chunks of `batch_size`: `cols[0]` are the square's column offsets, `cols[i + 1]`
    stage i's window columns.
    """
    stages = rf.stages(arch)
    channels = cache.canvases[0].shape[2]

    def chunk(y, starts_y, idx):
        window = jnp.broadcast_to(fill, (len(idx), patch, patch, channels))
        wy, wxs, feature = y, [cols[0][j] for j in idx], None
        for st, (lh, lw), sy, sxs, canvas in zip(stages, sizes, starts_y, cols[1:], cache.canvases):
            rh, rw = (lh - 1) * st.stride + st.kernel, (lw - 1) * st.stride + st.kernel
            sxs = [sxs[j] for j in idx]
            band = lax.dynamic_slice_in_dim(canvas, sy * st.stride, rh, axis=0)
            region = _overlay(_columns(band, [sx * st.stride for sx in sxs], rw), window,
                              wy + st.pad - sy * st.stride, [wx + st.pad - sx * st.stride
                                                             for wx, sx in zip(wxs, sxs)])
            window, wy, wxs = jax.vmap(functools.partial(_step, arch, params, st))(region), sy, sxs
            if st.name == layer:
                new = lax.dynamic_index_in_dim(window, cache.channel, axis=3)
                feature = jnp.sum(_overlay(jnp.broadcast_to(cache.feature_map, (len(idx), *cache.feature_map.shape)),
                                           new, wy, wxs), axis=(1, 2, 3))
        return _overlay(jnp.broadcast_to(cache.last, (len(idx), *cache.last.shape)), window, wy, wxs), feature

    def row(xs):
        y, starts_y = xs
        parts = [chunk(y, starts_y, range(i, min(i + batch_size, len(cols[0]))))
                 for i in range(0, len(cols[0]), batch_size)]
        return tuple(jnp.concatenate(p) for p in zip(*parts))

    last, feature = lax.map(row, (ys, win_ys))
    logits = lax.map(functools.partial(models.head, arch, params), last.reshape(-1, 1, *last.shape[2:]),
                     batch_size=HEAD_BATCH)
    return logits.reshape(*last.shape[:2], -1), feature


@functools.partial(jax.jit, static_argnames=("features", "logits", "patch", "batch_size"))
def _brute(features, logits, variables, image: Array, fill: Array, ys: Array, xs: Array, *, patch: int,
           batch_size: int) -> tuple[Array, Array, Array]:
    """Logits (P, classes), feature totals (P,) and the channel, one full forward per occluded image."""
    channel = jnp.argmax(_channel_sum(features(variables, image[None])))
    rows, cols = jnp.arange(image.shape[0]), jnp.arange(image.shape[1])

    def one(pos):
        y, x = pos
        inside = ((rows >= y) & (rows < y + patch))[:, None, None] & ((cols >= x) & (cols < x + patch))[None, :, None]
        occluded = jnp.where(inside, fill, image)[None]
        fmap = features(variables, occluded)[0]
        return logits(variables, occluded)[0], jnp.sum(lax.dynamic_index_in_dim(fmap, channel, axis=fmap.ndim - 1))

    logit, feature = lax.map(one, (ys, xs), batch_size=batch_size)
    return logit, feature, channel


def _check(net: network.Network, image, label: int, patch: int, stride: int, fill, layer: str, method: str,
           batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """ValueError naming the first bad argument; returns the image and fill as float32 arrays."""
    h, w, c = net.input_shape
    image = np.asarray(image)
    if image.ndim != 3 or image.shape != (h, w, c):
        raise ValueError(f"image must be one HWC image of shape {(h, w, c)} for {net.name}, got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image dtype {image.dtype} is not floating point: pass it in the network's input space")
    for name, v in (("patch", patch), ("stride", stride), ("batch_size", batch_size)):
        if int(v) != v or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if patch > h or patch > w:
        raise ValueError(f"patch {patch} is larger than the {h}x{w} image")
    classes = net.num_classes()
    if int(label) != label or not 0 <= label < classes:
        raise ValueError(f"label {label!r} is out of range for {classes} classes")
    if layer not in net.layers:
        raise ValueError(f"layer {layer!r} is not a conv or pool layer of {net.name}; choose one of "
                         f"{list(net.layers)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    fill = np.asarray(fill, np.float32)
    if fill.shape not in ((), (c,)):
        raise ValueError(f"fill must be a scalar or one value per channel ({c},), got shape {fill.shape}")
    return image.astype(np.float32), fill


def occlusion_maps(model: models.Arch | network.Network, params, image, label: int, *, patch: int, stride: int,
                   fill: float | Sequence[float] = 0.0, layer: str = "conv5", method: str = "auto",
                   batch_size: int = 64) -> Maps:
    """Fig. 7's maps for one HWC `image` (network input space) and its true `label`; see `Maps`.

    `model` is a built-in `models.Arch` with its `params`, or any `zfjax.network.Network` (`params` None: its
    variables). ``method="incremental"`` (a built-in net's receptive-field-cone path) or ``"brute"`` (one forward
    per occluded image: any model); ``"auto"`` takes the incremental path where there is one. `fill` is the
    square's value in input space (0.0 = the mean pixel after mean subtraction, the paper's grey), a scalar or one
    per channel. `batch_size` bounds the positions evaluated at once (memory): brute force runs batches of that
    many occluded images, the incremental path one grid row at a time in column chunks of that size.
    """
    net = model if isinstance(model, network.Network) else network.from_arch(model, params, 0.0, 1.0)
    variables = net.variables if params is None else params
    arch = _arch(net, layer)
    if method == "auto":
        method = "brute" if arch is None else "incremental"
    if method == "incremental" and arch is None:
        raise ValueError(f"the incremental path needs a built-in net; use method='brute' for {net.name}")
    image, fill = _check(net, image, label, patch, stride, fill, layer, method, batch_size)
    if arch is not None:
        models.check_images(arch, image[None])
        models.check_params(arch, variables)
    oy, ox = (grid(n, patch, stride).astype(np.int32) for n in image.shape[:2])
    iy, ix = (a.ravel() for a in np.meshgrid(np.arange(len(oy)), np.arange(len(ox)), indexing="ij"))
    batch_size = min(batch_size, len(iy))
    if method == "brute":
        logits, feature, channel = _brute(net.feature_map(layer), net.apply, variables, image, fill, oy[iy], ox[ix],
                                          patch=patch, batch_size=batch_size)
    else:
        size_y, start_y = cone_windows(arch, 0, oy, patch)
        size_x, start_x = cone_windows(arch, 1, ox, patch)
        cache = _prepare(arch, variables, image, layer=layer)
        cols = tuple(tuple(int(v) for v in a) for a in [ox, *start_x])
        logits, feature = _incremental(arch, variables, cache, fill, oy, tuple(start_y), layer=layer, patch=patch,
                                       sizes=tuple(zip(size_y, size_x)), cols=cols, batch_size=batch_size)
        logits, feature = logits.reshape(-1, logits.shape[-1]), feature.reshape(-1)
        channel = cache.channel
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    shape = (len(oy), len(ox))
    return Maps(prob_true=probs[:, label].reshape(shape), top_label=np.argmax(probs, axis=-1).reshape(shape),
                feature=np.asarray(feature).reshape(shape), channel=int(channel))


def _arch(net: network.Network, layer: str) -> models.Arch | None:
    """The built-in net behind `net` (its logits and `layer` computed by it), else None."""
    logits, features = net.apply, net.layers.get(layer)
    if isinstance(logits, network.ArchLogits) and isinstance(features, network.ArchLayer) and \
            features.arch == logits.arch:
        return logits.arch
    return None


__all__ = ["Maps", "occlusion_maps", "grid", "cone_windows", "METHODS"]
