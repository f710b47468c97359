"""One streaming pass over a dataset that describes every unit of chosen layers, merged across processes.

Per channel of each layer: the top-k activations in `zfjax.analyses.topk`'s order (each image once, at its strongest
position; larger value first, ties to the smaller image index) with the class labels of those images, the mean
activation over every position of every image, and the number of images on which the unit fires (its strongest
activation is > 0). One jit-compiled step computes all layers of a batch (their forward passes are one program).

Several processes (`jax.distributed`) each pass their own shard of the dataset, with global image indices: `scan`
gathers every process's running state and merges it, so that each process gets what one pass over the whole
dataset gives. The statistics are summed on the host in float64 and gathered bit for bit, so the merged numbers
do not depend on how the dataset was split.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zfjax import network
from zfjax.analyses import topk

Array = jax.Array


class Tally(NamedTuple):
    """A layer's running description over the images seen so far (numpy; `combine` merges tallies).

    `values`, `image`, `position` (flat h * W + w), `labels`: (C, k) best first, as in `topk.State`; slots beyond
    the images seen hold value -inf and image -1, `labels` is -1 where unknown. `activation_sum` (C,) float64 sums
    each image's mean activation, `fired` (C,) counts the images where the unit's strongest activation is > 0,
    `images` counts the images.
    """
    values: np.ndarray
    image: np.ndarray
    position: np.ndarray
    labels: np.ndarray
    activation_sum: np.ndarray
    fired: np.ndarray
    images: int


class LayerStats(NamedTuple):
    """What the scan says about each unit (channel) of one layer; (C, k) arrays best first, k <= images scanned."""
    top: topk.TopK  # values, image (global index), h, w
    labels: np.ndarray  # (C, k) class label of each top image (-1: not given)
    mean: np.ndarray  # (C,) mean activation over every position of every image
    fires: np.ndarray  # (C,) fraction of images where the unit's strongest activation is > 0
    images: int  # images scanned


@functools.partial(jax.jit, static_argnames=("features",))
def _step(features: tuple, variables: Any, states: tuple, images: Array, indices: Array, valid: Array):
    """One batch through every layer: merged top-k states, and per (channel, image) mean and max activation."""
    out, means, maxima = [], [], []
    for fn, state in zip(features, states):
        acts = fn(variables, images)
        best, position = topk.best_per_image(acts)
        candidates = jnp.where(valid[None, :], best, -jnp.inf)  # padding rows sort after every real activation
        out.append(topk.merge(state, candidates, jnp.broadcast_to(indices[None, :], best.shape), position))
        means.append(jnp.mean(acts, axis=(1, 2)).T)
        maxima.append(best)
    return tuple(out), tuple(means), tuple(maxima)


def _batches(batches: Iterable, input_shape: tuple[int, ...]):
    """(images, indices, labels) of each item: an (images, indices, labels) triple or an (images, indices) pair."""
    for item in batches:
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise ValueError("each batch must be an (images, indices) pair or an (images, indices, labels) triple")
        images, indices = np.asarray(item[0]), np.asarray(item[1])
        labels = np.asarray(item[2]) if len(item) == 3 else np.full(len(indices), -1)
        if images.ndim != 4 or images.shape[1:] != tuple(input_shape):
            raise ValueError(f"each batch of images must be (N, {', '.join(map(str, input_shape))}), got shape "
                             f"{images.shape}")
        if indices.shape != (len(images),) or labels.shape != (len(images),):
            raise ValueError(f"need one index and one label per image: {len(images)} images, indices "
                             f"{indices.shape}, labels {labels.shape}")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"image dtype {images.dtype} is not floating point: give network inputs")
        if not np.isfinite(images).all():
            raise ValueError("images hold NaN or infinite values: check how they were loaded and normalized")
        if len(indices) and (indices.min() < 0 or indices.max() >= np.iinfo(np.int32).max):
            raise ValueError(f"image indices must lie in [0, 2**31 - 1), got {indices.min()}..{indices.max()}")
        yield images.astype(np.float32), indices.astype(np.int32), labels.astype(np.int64)


def map_shapes(net: network.Network, layers: Sequence[str], variables: Any = None) -> dict[str, tuple[int, ...]]:
    """Each layer's feature map shape (h, w, channels) (ValueError for a layer the network does not have)."""
    variables = net.variables if variables is None else variables
    x = jax.ShapeDtypeStruct((1, *net.input_shape), jnp.float32)
    return {layer: tuple(jax.eval_shape(net.features(layer), variables, x).shape[1:]) for layer in layers}


def tally(net: network.Network, layers: Sequence[str], batches: Iterable, *, k: int = 9, variables: Any = None,
          sharding: jax.sharding.Sharding | None = None) -> dict[str, Tally]:
    """This process's `Tally` of every layer over `batches` (images at ``net.input_shape`` in network input space,
    with their global dataset indices and, optionally, labels). The last, smaller batch is padded to the first
    one's size so the step compiles once; `sharding` places each batch on a device mesh."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    variables = net.variables if variables is None else variables
    sizes = [shape[2] for shape in map_shapes(net, layers, variables).values()]
    features = tuple(net.features(layer) for layer in layers)
    states = tuple(topk.empty(c, k) for c in sizes)
    sums = [np.zeros(c) for c in sizes]
    fired = [np.zeros(c, np.int64) for c in sizes]
    seen_index, seen_label, size = [], [], None
    for images, indices, labels in _batches(batches, net.input_shape):
        n = len(images)
        if not n:
            continue
        size = n if size is None else max(size, n)
        valid = np.arange(size) < n
        batch = (np.pad(images, ((0, size - n),) + ((0, 0),) * 3), np.pad(indices, (0, size - n)), valid)
        if sharding is not None:
            batch = jax.device_put(batch, sharding)
        states, means, maxima = _step(features, variables, states, *batch)
        for i, (mean, best) in enumerate(zip(means, maxima)):
            sums[i] += np.asarray(mean)[:, :n].sum(1, dtype=np.float64)
            fired[i] += (np.asarray(best)[:, :n] > 0).sum(1)
        seen_index.append(indices)
        seen_label.append(labels)
    count = sum(len(i) for i in seen_index)
    lookup = _LabelLookup(np.concatenate(seen_index) if count else np.zeros(0, np.int64),
                          np.concatenate(seen_label) if count else np.zeros(0, np.int64))
    out = {}
    for i, layer in enumerate(layers):
        values, image, position = (np.asarray(a) for a in jax.device_get(states[i]))
        image = np.where(np.isfinite(values), image, -1).astype(np.int64)  # an empty or padding slot
        out[layer] = Tally(values, image, position, lookup(image), sums[i], fired[i], count)
    return out


class _LabelLookup:
    """Global image index -> its label (-1 for an index not seen)."""

    def __init__(self, indices: np.ndarray, labels: np.ndarray):
        order = np.argsort(indices, kind="stable")
        self.indices, self.labels = np.asarray(indices)[order], np.asarray(labels)[order]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if not len(self.indices):
            return np.full(image.shape, -1, np.int64)
        at = np.clip(np.searchsorted(self.indices, image), 0, len(self.indices) - 1)
        return np.where(self.indices[at] == image, self.labels[at], -1).astype(np.int64)


def combine(parts: Sequence[Mapping[str, Tally]]) -> dict[str, Tally]:
    """Merge the tallies of disjoint shards of a dataset into the tally of their union (per layer)."""
    if not parts:
        raise ValueError("nothing to combine")
    out = {}
    for layer in parts[0]:
        shards = [p[layer] for p in parts]
        k = shards[0].values.shape[1]
        cat = [np.concatenate([getattr(s, f) for s in shards], axis=1) for f in ("values", "image", "position")]
        state = jax.device_get(topk.merge(topk.empty(len(cat[0]), k), *(jnp.asarray(a) for a in cat)))
        values, image, position = (np.asarray(a) for a in state)
        image = image.astype(np.int64)
        known = np.concatenate([s.labels for s in shards], axis=1) >= 0
        lookup = _LabelLookup(np.concatenate([s.image for s in shards], axis=1)[known],
                              np.concatenate([s.labels for s in shards], axis=1)[known])
        out[layer] = Tally(values, image, position, lookup(image), sum(s.activation_sum for s in shards),
                           sum(s.fired for s in shards), sum(s.images for s in shards))
    return out


def _allgather(a: np.ndarray) -> np.ndarray:
    """(processes, ...) every process's `a`, bit for bit (8-byte numbers travel as pairs of uint32)."""
    from jax.experimental import multihost_utils
    a = np.ascontiguousarray(a)
    wide = a.dtype.itemsize == 8
    got = np.asarray(multihost_utils.process_allgather(a.view(np.uint32) if wide else a))
    return np.ascontiguousarray(got).view(a.dtype) if wide else got


def gather(tallies: Mapping[str, Tally]) -> dict[str, Tally]:
    """The tallies of every process (`jax.distributed`), combined; this process's own when it runs alone."""
    if jax.process_count() == 1:
        return dict(tallies)
    parts = [{} for _ in range(jax.process_count())]
    for layer, t in tallies.items():
        fields = [_allgather(np.asarray(getattr(t, f))) for f in Tally._fields[:-1]]
        images = _allgather(np.asarray([t.images], np.int64))[:, 0]
        for p in range(len(parts)):
            parts[p][layer] = Tally(*(f[p] for f in fields), int(images[p]))
    return combine(parts)


def finish(tallies: Mapping[str, Tally], widths: Mapping[str, int]) -> dict[str, LayerStats]:
    """`LayerStats` of each layer from its tally and its map width (ValueError when no image was scanned)."""
    out = {}
    for layer, t in tallies.items():
        if not t.images:
            raise ValueError("no images to scan: the dataset is empty")
        kept = min(t.values.shape[1], t.images)
        position = t.position[:, :kept]
        top = topk.TopK(t.values[:, :kept], t.image[:, :kept], position // widths[layer], position % widths[layer])
        out[layer] = LayerStats(top, t.labels[:, :kept], t.activation_sum / t.images, t.fired / t.images, t.images)
    return out


def scan(net: network.Network, layers: Sequence[str], batches: Iterable, *, k: int = 9, variables: Any = None,
         sharding: jax.sharding.Sharding | None = None) -> dict[str, LayerStats]:
    """`LayerStats` of every layer over the whole dataset: `tally` of this process's `batches`, `gather`ed across
    processes (each passes its own shard, with global indices), `finish`ed."""
    widths = {layer: shape[1] for layer, shape in map_shapes(net, layers, variables).items()}
    return finish(gather(tally(net, layers, batches, k=k, variables=variables, sharding=sharding)), widths)


__all__ = ["Tally", "LayerStats", "map_shapes", "tally", "combine", "gather", "finish", "scan"]
