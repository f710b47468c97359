"""Invariance of features to image transforms (the paper's Fig. 5): pure transforms and batched sweeps.

`transform(images, kind, value)` moves NHWC images in the network's input space:

- ``"translate"``: vertical translation by `value` pixels (positive = content moves down);
- ``"scale"``: zoom by the factor `value` about the image centre (> 1 enlarges, the border is cropped away);
- ``"rotate"``: rotation by `value` degrees about the image centre (positive = counter-clockwise on screen).

Each output pixel is read from the input by bilinear interpolation (`jax.scipy.ndimage.map_coordinates`, order 1)
at the inversely transformed position; the image is surrounded by `fill` (0.0 = the mean pixel after mean
subtraction, the grey the paper's occluder uses too), so positions within one pixel outside the edge blend the edge
pixel with `fill` (scipy's "grid-constant" mode). Integer shifts and multiples of 90 degrees are exact.

`sweep` runs every (transform value, image) pair through the network in batches and returns, per value, the
Euclidean distance between the feature vectors of the original and the transformed image at the chosen layers, and
p(true class) of the transformed image.
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

Array = jax.Array
TRANSFORMS = ("translate", "scale", "rotate")


def _source_coords(kind: str, value: Array, h: int, w: int) -> tuple[Array, Array]:
    """(rows, cols), each (H, W): where each output pixel reads the input (the inverse of the transform)."""
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - cy, jnp.arange(w, dtype=jnp.float32) - cx, indexing="ij")
    value = jnp.asarray(value, jnp.float32)
    if kind == "translate":
        return y - value + cy, x + cx
    if kind == "scale":
        return y / value + cy, x / value + cx
    # rotate: with y pointing down, the output pixel (y, x) reads the input rotated back (clockwise on screen).
    t = jnp.deg2rad(value)
    c, s = jnp.cos(t), jnp.sin(t)
    return c * y + s * x + cy, c * x - s * y + cx


def transform(images: Array, kind: str, value, fill: float = 0.0) -> Array:
    """`images` (N, H, W, C) transformed by `kind` with `value` (see the module docstring). `value` may be traced
    (jit/vmap over it); `fill` is a Python float (static under jit)."""
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; choose one of {TRANSFORMS}")
    if jnp.ndim(images) != 4:
        raise ValueError(f"images must be NHWC (4-D), got shape {jnp.shape(images)}")
    _, h, w, _ = images.shape
    coords = _source_coords(kind, value, h, w)

    def one_channel(plane: Array) -> Array:
        return jax.scipy.ndimage.map_coordinates(plane, coords, order=1, mode="constant", cval=fill)

    return jax.vmap(jax.vmap(one_channel, in_axes=2, out_axes=2))(images)


class Sweep(NamedTuple):
    """One transform swept over `values` for N images."""
    kind: str
    values: np.ndarray  # (V,)
    distance: dict[str, np.ndarray]  # layer -> (N, V): ||features(T_v(x_n)) - features(x_n)||_2
    prob_true: np.ndarray  # (N, V): p(label_n | T_v(x_n))


def _flat(x: Array) -> Array:
    return x.reshape(x.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("features", "logits", "kind", "fill", "batch_size"))
def _measure(features: tuple, logits, variables, images: Array, labels: Array, values: Array, *, kind: str,
             fill: float, batch_size: int) -> tuple[tuple[Array, ...], Array]:
    """Per value: distances (one (N,) per feature function) and p(true) (N,); `batch_size` values at a time."""
    base = [f(variables, images) for f in features]

    def one(value):
        moved = transform(images, kind, value, fill)
        dist = tuple(jnp.linalg.norm(_flat(f(variables, moved)) - _flat(b), axis=1) for f, b in zip(features, base))
        prob = jax.nn.softmax(logits(variables, moved), axis=-1)[jnp.arange(images.shape[0]), labels]
        return dist, prob

    return lax.map(one, values, batch_size=batch_size)


def sweep(model: models.Arch | network.Network, params, images, labels, kind: str, values: Sequence[float], *,
          layers: Sequence[str], fill: float = 0.0, batch_size: int = 4) -> Sweep:
    """Transform every image by every value of `kind` and measure feature distances at `layers` and p(true label).

    `model` is a built-in `models.Arch` with its `params`, or any `zfjax.network.Network` (`params` None: its
    variables; `layers` name its maps or vectors). `images` (N, H, W, C) float in the network's input space,
    `labels` (N,) ints. `batch_size` transform values run at once (N images each), which bounds memory.
    """
    net = model if isinstance(model, network.Network) else network.from_arch(model, params, 0.0, 1.0)
    variables = net.variables if params is None else params
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != tuple(net.input_shape):
        raise ValueError(f"images must be (N, {', '.join(map(str, net.input_shape))}) for {net.name}, "
                         f"got {images.shape}")
    classes = net.num_classes()
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {len(images)} integers, got {labels!r}")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels {labels.tolist()} out of range for {classes} classes")
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; choose one of {TRANSFORMS}")
    known = list(net.layers) + list(net.vectors)
    bad = [name for name in layers if name not in known]
    if bad or not layers:
        raise ValueError(f"layers {bad or layers!r} not in {net.name}'s {known}")
    values = np.asarray(values, np.float32)
    if values.ndim != 1 or not len(values):
        raise ValueError(f"values must be a non-empty 1-D sequence, got {values!r}")
    if kind == "scale" and values.min() <= 0:
        raise ValueError(f"scale factors must be positive, got {values.tolist()}")
    dist, prob = _measure(tuple(net.features(name) for name in layers), net.apply, variables, images,
                          labels.astype(np.int32), values, kind=kind, fill=float(fill),
                          batch_size=min(batch_size, len(values)))
    return Sweep(kind, values, {name: np.asarray(d).T for name, d in zip(layers, dist)}, np.asarray(prob).T)


__all__ = ["TRANSFORMS", "transform", "Sweep", "sweep"]
