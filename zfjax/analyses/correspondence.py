"""Correspondence of object parts across images (the paper's Table 1).

For images x_1..x_N of one kind of object, the same part (e.g. the left eye) is masked in each by a box of `fill`
(0.0 = the mean pixel, grey), giving x~_i. At layer l let eps_i = f_l(x_i) - f_l(x~_i) (features of the original
minus those of the masked image, flattened to D numbers) and s_i = sign(eps_i) in {-1, 0, +1}^D. Then

    H(s_i, s_j) = (1 / D) * #{d : s_i[d] != s_j[d]}                 (Hamming distance as a fraction of D)
    Delta_l     = 1 / (N (N - 1)) * sum over ordered pairs i != j of H(s_i, s_j)

The paper writes Delta_l as the plain sum over pairs; its numbers (0.067 .. 0.107 for 5 images) are only possible
for a normalized Hamming distance averaged over the pairs, so both normalizations are applied here: Delta is in
[0, 1] and does not grow with N. Lower Delta = masking the part changes the representation in the same way in every
image (correspondence). The control masks a random box of the same size in each image.

Entries with |eps| <= rtol * max|f_l(x_i)| count as 0 (unchanged): units outside the mask's receptive field are
computed from identical inputs, and this keeps them at exactly 0 on hardware whose reductions are not bitwise
reproducible across batch positions.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zfjax import network
from zfjax.network import models

Array = jax.Array


def _check_boxes(boxes, n: int, h: int, w: int) -> np.ndarray:
    """(N, 4) int boxes (top, left, height, width) inside an h x w image, else ValueError."""
    boxes = np.asarray(boxes)
    if boxes.shape != (n, 4) or not np.issubdtype(boxes.dtype, np.integer):
        raise ValueError(f"boxes must be {n} integer rows (top, left, height, width), got {boxes.tolist()}")
    top, left, bh, bw = boxes.T
    if (bh <= 0).any() or (bw <= 0).any() or (top < 0).any() or (left < 0).any() or \
            (top + bh > h).any() or (left + bw > w).any():
        raise ValueError(f"boxes {boxes.tolist()} must be non-empty and inside the {h}x{w} image")
    return boxes


def mask(images, boxes, fill: float = 0.0) -> np.ndarray:
    """`images` (N, H, W, C) with box i (top, left, height, width) of image i set to `fill`."""
    images = np.array(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC (4-D), got shape {images.shape}")
    for image, (top, left, bh, bw) in zip(images, _check_boxes(boxes, len(images), *images.shape[1:3])):
        image[top:top + bh, left:left + bw] = fill
    return images


def random_boxes(rng: np.random.Generator, n: int, size: tuple[int, int], within: Sequence[int]) -> np.ndarray:
    """`n` boxes of `size` (height, width), uniformly placed inside the region `within` (top, left, height, width)."""
    top, left, h, w = within
    bh, bw = size
    if bh > h or bw > w:
        raise ValueError(f"a {bh}x{bw} box does not fit in the region {tuple(within)}")
    ys = rng.integers(top, top + h - bh + 1, size=n)
    xs = rng.integers(left, left + w - bw + 1, size=n)
    return np.stack([ys, xs, np.full(n, bh), np.full(n, bw)], axis=1)


@functools.partial(jax.jit, static_argnames=("features",))
def _signs(features: tuple, variables, images: Array, masked: Array, rtol: float) -> tuple[Array, ...]:
    n = images.shape[0]
    both = jnp.concatenate([images, masked])
    out = []
    for fn in features:
        f = fn(variables, both).reshape(2 * n, -1)
        eps = f[:n] - f[n:]
        tol = rtol * jnp.max(jnp.abs(f[:n]), axis=1, keepdims=True)
        out.append(jnp.where(jnp.abs(eps) <= tol, 0, jnp.sign(eps)).astype(jnp.int8))
    return tuple(out)


def sign_changes(model: models.Arch | network.Network, params, images, boxes, layers: Sequence[str], *,
                 fill: float = 0.0, rtol: float = 1e-6) -> dict[str, np.ndarray]:
    """layer -> (N, D) int8: sign(f(x_i) - f(x~_i)) with x~_i = image i with box i set to `fill`.

    `model` is a built-in `models.Arch` with its `params`, or any `zfjax.network.Network` (`params` None: its
    variables; `layers` name its maps or vectors)."""
    net = model if isinstance(model, network.Network) else network.from_arch(model, params, 0.0, 1.0)
    variables = net.variables if params is None else params
    images = np.asarray(images, np.float32)
    if images.shape[1:] != tuple(net.input_shape):
        raise ValueError(f"images must be (N, {', '.join(map(str, net.input_shape))}) for {net.name}, "
                         f"got {images.shape}")
    known = list(net.layers) + list(net.vectors)
    bad = [name for name in layers if name not in known]
    if bad or not layers:
        raise ValueError(f"layers {bad or list(layers)!r} not in {net.name}'s {known}")
    masked = mask(images, boxes, fill)
    signs = _signs(tuple(net.features(name) for name in layers), variables, images, masked, np.float32(rtol))
    return {name: np.asarray(s) for name, s in zip(layers, signs)}


def hamming(signs) -> np.ndarray:
    """(N, N): H(s_i, s_j), the fraction of the D entries where the sign vectors of images i and j differ."""
    s = np.asarray(signs)
    if s.ndim != 2 or len(s) < 2:
        raise ValueError(f"signs must be (N >= 2, D), got shape {s.shape}")
    onehot = np.stack([s == v for v in (-1, 0, 1)], axis=-1).reshape(len(s), -1).astype(np.float32)
    return 1.0 - (onehot @ onehot.T) / s.shape[1]  # agreements are the matching one-hot entries


def pair_distances(signs) -> np.ndarray:
    """H(s_i, s_j) for the N (N - 1) / 2 unordered pairs i < j (H is symmetric, so the ordered mean is theirs)."""
    h = hamming(signs)
    return h[np.triu_indices(len(h), k=1)]


def delta(signs) -> float:
    """Delta_l of the module docstring: the mean over ordered pairs i != j of the normalized Hamming distance."""
    return float(pair_distances(signs).mean())


class Score(NamedTuple):
    """Delta at one layer for one part: the mean over pairs and repeats, and the spreads."""
    delta: float
    std_pairs: float  # std of H over all pairs (of all repeats)
    std_repeats: float  # std of Delta over repeats (0 for a fixed part: one repeat)


def score(sign_sets: Sequence[np.ndarray]) -> Score:
    """Score of one or more repeats (each an (N, D) sign matrix, e.g. one per random draw of boxes)."""
    pairs = np.concatenate([pair_distances(s) for s in sign_sets])
    deltas = np.array([delta(s) for s in sign_sets])
    return Score(float(deltas.mean()), float(pairs.std()), float(deltas.std()))


__all__ = ["mask", "random_boxes", "sign_changes", "hamming", "pair_distances", "delta", "Score", "score"]
