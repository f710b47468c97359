"""The strongest activations of every feature map over a whole dataset (the paper's Fig. 2 picks the top 9).

`scan` streams batches through the network once and keeps, per channel of a layer, the k best (value, image index,
position) in O(channels x k) memory. Each image counts once per channel, at its strongest position, so the k are k
different images, as in the paper's figure. Order is deterministic: larger value first, ties to the smaller image
index; within an image, ties to the first position in row-major order.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from zfjax import network
from zfjax.network import Features, models

Array = jax.Array
_NO_IMAGE = np.iinfo(np.int32).max  # index of an empty slot: sorts after every real image on ties


class TopK(NamedTuple):
    """Per channel, the k strongest activations, best first; each (channels, k) with k <= images scanned.

    `image` is the global index of the image, `h`, `w` the position in the layer's map.
    """
    values: np.ndarray
    image: np.ndarray
    h: np.ndarray
    w: np.ndarray


class State(NamedTuple):
    """The running top-k of a scan, (channels, k) each; empty slots hold -inf and `_NO_IMAGE`."""
    values: Array
    image: Array
    position: Array


def empty(channels: int, k: int) -> State:
    """A state with no image seen yet."""
    return State(jnp.full((channels, k), -jnp.inf, jnp.float32), jnp.full((channels, k), _NO_IMAGE, jnp.int32),
                 jnp.zeros((channels, k), jnp.int32))


def merge(state: State, values: Array, image: Array, position: Array) -> State:
    """Keep the k best of `state` and new candidates (channels, m): by value, ties to the smaller image index."""
    k = state.values.shape[1]
    cat = [jnp.concatenate([a, b], axis=1) for a, b in zip(state, (values, image, position))]
    neg, img, pos = lax.sort((-cat[0], cat[1], cat[2]), dimension=1, num_keys=2)
    return State(-neg[:, :k], img[:, :k], pos[:, :k])


def best_per_image(acts: Array) -> tuple[Array, Array]:
    """(N, H, W, C) maps -> per (channel, image) the maximum and its flat position h * W + w, both (C, N)."""
    n, h, w, c = acts.shape
    flat = acts.reshape(n, h * w, c)
    return jnp.max(flat, axis=1).T, jnp.argmax(flat, axis=1).astype(jnp.int32).T


@functools.partial(jax.jit, static_argnames=("features",))
def update(features: Features, params: Any, state: State, images: Array, indices: Array, valid: Array) -> State:
    """One batch of the scan: ``features(params, images)``, best position per (image, channel), merge into `state`.

    `indices` (N,) are the images' global indices; rows with `valid` False (padding) are ignored.
    """
    acts = models.map_chunks(lambda part: features(params, part), images)
    best, position = best_per_image(acts)
    best = jnp.where(valid[None, :], best, -jnp.inf)
    image = jnp.broadcast_to(jnp.where(valid, indices, _NO_IMAGE).astype(jnp.int32)[None, :], best.shape)
    return merge(state, best, image, position)


def _batches(batches: Iterable, input_shape: tuple[int, ...] | None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Normalize the stream to (images, indices); bare image arrays get consecutive indices. Every batch must have
    `input_shape` per image (None: the first batch's)."""
    seen = 0
    for item in batches:
        images, indices = item if isinstance(item, tuple) else (item, None)
        images = np.asarray(images)
        input_shape = images.shape[1:] if input_shape is None and images.ndim == 4 else input_shape
        if images.ndim != 4 or images.shape[1:] != tuple(input_shape):
            shape = ", ".join(map(str, input_shape)) if input_shape is not None else "H, W, C"
            raise ValueError(f"each batch must be an (N, {shape}) array or an (images, indices) pair, got shape "
                             f"{images.shape}")
        indices = np.arange(seen, seen + len(images)) if indices is None else np.asarray(indices)
        if indices.shape != (len(images),) or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be {len(images)} integers, one per image, got {indices.dtype} "
                             f"{indices.shape}")
        if len(indices) and (indices.min() < 0 or indices.max() >= _NO_IMAGE):
            raise ValueError(f"image indices must lie in [0, {_NO_IMAGE}), got {indices.min()}..{indices.max()}")
        seen += len(images)
        yield images, indices


def scan(features: Features | models.Arch, params: Any, batches: Iterable, *, layer: str | None = None, k: int = 9,
         sharding: jax.sharding.Sharding | None = None) -> TopK:
    """Top-`k` activations of every channel of a feature map over all `batches` (see the module docstring).

    `features` is a function ``(params, images) -> (N, h, w, c)`` (a `zfjax.network.Features`: any model's layer),
    or a built-in `models.Arch` with the name of its conv or pool `layer`. `batches` yields NHWC float arrays or
    (images, indices) pairs. A smaller (last) batch is padded to the first batch's size so the step compiles once.
    `sharding` (e.g. ``NamedSharding(mesh, P("batch"))``) places each batch on a device mesh; the state stays
    replicated. Fewer than `k` images give fewer than `k` columns.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    input_shape = None
    if isinstance(features, models.Arch):
        features, input_shape = _arch_features(features, params, layer), features.input_shape
    state, size, seen, width = None, None, 0, None
    for images, indices in _batches(batches, input_shape):
        _check_images(images)
        if state is None:
            shape = jax.eval_shape(features, params, jax.ShapeDtypeStruct(images.shape, images.dtype)).shape
            if len(shape) != 4:
                raise ValueError(f"the feature function gives shape {shape}, not an (N, h, w, c) feature map")
            state, width = empty(shape[3], k), shape[2]
        n = len(images)
        size = n if size is None else max(size, n)
        valid = np.arange(size) < n
        images = np.pad(images, ((0, size - n),) + ((0, 0),) * 3)
        indices = np.pad(indices, (0, size - n)).astype(np.int32)
        if sharding is not None:
            images, indices, valid = jax.device_put((images, indices, valid), sharding)
        state = update(features, params, state, images, indices, valid)
        seen += n
    if state is None:
        raise ValueError("no images to scan: the batches are empty")
    kept = min(k, seen)
    values, image, position = (np.asarray(a)[:, :kept] for a in state)
    return TopK(values, image.astype(np.int64), position // width, position % width)


def _arch_features(arch: models.Arch, params: models.Params, layer: str | None) -> Features:
    """A built-in net's `layer` as a feature function (ValueError for a layer that is no conv or pool map)."""
    shapes = arch.shapes()
    maps = [n for n in arch.layer_names if len(shapes[n]) == 3]
    models.check_layer(arch, layer, maps, problem=f"layer {layer!r} is not a conv or pool layer of {arch.name}")
    models.check_params(arch, params)
    return network.ArchLayer(arch, layer)


def _check_images(images: np.ndarray) -> None:
    """ValueError for a batch that is not float or holds NaN or Inf."""
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"input dtype {images.dtype} is not floating point: convert and scale images first")
    if not np.isfinite(images).all():
        raise ValueError("input has NaN or infinite values: check how the images were loaded and normalized")


__all__ = ["TopK", "State", "empty", "merge", "best_per_image", "update", "scan"]
