"""The network's layer primitives: convolution, max pooling that keeps its switches, contrast normalization.

Everything is a pure function on NHWC float arrays. Max pooling carries a `jax.custom_vjp` whose backward pass is
the paper's *unpooling*: each gradient value goes back to the location its switch recorded. That is also the exact
gradient of max pooling (ties go to the first maximum in row-major window order, as in torch), and it is much
faster on CPU than XLA's generic ``select_and_scatter``.

`Ops` bundles the three nonlinear pieces whose backward rule the deconvnet changes (ReLU, pooling, LCN), so that
`zfjax.models.apply` runs the same code for training and for every projection rule.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def conv(x: Array, w: Array, b: Array | None, stride: int, padding: int) -> Array:
    """2-D convolution, NHWC input and HWIO filters, symmetric zero padding; `b=None` skips the bias."""
    y = lax.conv_general_dilated(
        x, w, (stride, stride), ((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y if b is None else y + b


def pool_output_size(n: int, window: int, stride: int, ceil_mode: bool) -> int:
    """Output length of a max pool; ceil mode keeps a last, partial window (torch's rule: it must start inside)."""
    if ceil_mode:
        out = -(-(n - window) // stride) + 1
        if (out - 1) * stride >= n:
            out -= 1
        return out
    return (n - window) // stride + 1


def _pool_offsets(x: Array, window: int, stride: int, ceil_mode: bool) -> tuple[Array, Array]:
    """Max pool and, per output unit, the row-major offset (dy * window + dx) of its maximum inside the window."""
    n, h, w, c = x.shape
    oh, ow = (pool_output_size(s, window, stride, ceil_mode) for s in (h, w))
    ph, pw = max(0, (oh - 1) * stride + window - h), max(0, (ow - 1) * stride + window - w)
    xp = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=-jnp.inf)
    best, offset = None, None
    for k in range(window * window):
        dy, dx = divmod(k, window)
        cand = lax.slice(xp, (0, dy, dx, 0), (n, dy + (oh - 1) * stride + 1, dx + (ow - 1) * stride + 1, c),
                         (1, stride, stride, 1))
        if best is None:
            best, offset = cand, jnp.zeros(cand.shape, jnp.int32)
        else:
            better = cand > best  # strict: ties keep the first maximum
            best, offset = jnp.where(better, cand, best), jnp.where(better, k, offset)
    return best, offset


def unpool_offsets(g: Array, offset: Array, in_hw: tuple[int, int], window: int, stride: int) -> Array:
    """The paper's unpooling: put each value of `g` where its switch (`offset` in its window) says, zeros elsewhere."""
    n, oh, ow, c = g.shape
    h, w = in_hw
    full_h, full_w = max(h, (oh - 1) * stride + window), max(w, (ow - 1) * stride + window)
    zero = jnp.zeros((), g.dtype)
    out = None
    for k in range(window * window):
        dy, dx = divmod(k, window)
        part = lax.pad(jnp.where(offset == k, g, zero), zero,
                       ((0, 0, 0), (dy, full_h - dy - (oh - 1) * stride - 1, stride - 1),
                        (dx, full_w - dx - (ow - 1) * stride - 1, stride - 1), (0, 0, 0)))
        out = part if out is None else out + part
    return out[:, :h, :w, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: Array, window: int, stride: int, ceil_mode: bool) -> tuple[Array, Array]:
    """Max pool returning `(pooled, offsets)`; its VJP unpools with the offsets (the switches)."""
    return _pool_offsets(x, window, stride, ceil_mode)


def _max_pool_fwd(x, window, stride, ceil_mode):
    y, offset = _pool_offsets(x, window, stride, ceil_mode)
    return (y, offset), (offset, x.shape[1:3])


def _max_pool_bwd(window, stride, ceil_mode, res, cotangents):
    offset, in_hw = res
    return (unpool_offsets(cotangents[0], offset, in_hw, window, stride),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def switches_from_offsets(offset: Array, in_width: int, window: int, stride: int) -> Array:
    """Convert window offsets to the public switch format: flat index ``h * in_width + w`` in the pre-pool map."""
    _, oh, ow, _ = offset.shape
    dy, dx = offset // window, offset % window
    rows = jnp.arange(oh, dtype=jnp.int32)[None, :, None, None] * stride + dy
    cols = jnp.arange(ow, dtype=jnp.int32)[None, None, :, None] * stride + dx
    return rows * in_width + cols


def lcn(x: Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75) -> Array:
    """Krizhevsky's local response normalization across maps: x / (k + alpha * sum_{size nbrs} x^2)^beta.

    `alpha` is *not* divided by `size` (torch's `LocalResponseNorm(size, alpha * size, beta, k)` is the same op).
    """
    c = x.shape[-1]
    half = size // 2
    sq = jnp.pad(x * x, ((0, 0), (0, 0), (0, 0), (half, size - 1 - half)))
    total = sum(sq[..., i:i + c] for i in range(size))
    return x / (k + alpha * total) ** beta


class Ops(NamedTuple):
    """The nonlinear pieces of the forward pass; their VJPs define a backward rule (see `zfjax.deconv`)."""
    relu: Callable[[Array], Array]
    max_pool: Callable[[Array, int, int, bool], tuple[Array, Array]]
    lcn: Callable[..., Array]


PLAIN = Ops(relu=jax.nn.relu, max_pool=max_pool, lcn=lcn)
"""The ordinary network: its VJP is the true gradient (used for training and for the "saliency" rule)."""


def dropout(x: Array, rate: float, rng: Array) -> Array:
    """Inverted dropout: zero a `rate` fraction, scale the rest by 1/(1-rate) so that test time needs no rescale."""
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def conv_output_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution."""
    return (n + 2 * padding - kernel) // stride + 1


def rms(w: Array, axis) -> Array:
    """Root mean square over `axis`."""
    return jnp.sqrt(jnp.mean(jnp.square(w), axis=axis))


__all__ = ["conv", "max_pool", "unpool_offsets", "switches_from_offsets", "lcn", "dropout", "Ops", "PLAIN",
           "pool_output_size", "conv_output_size", "rms"]
