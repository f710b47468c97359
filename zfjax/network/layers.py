"""The network's layer primitives: convolution, max pooling that keeps its switches, contrast normalization.

Everything is a pure function on NHWC float arrays. Max pooling carries a `jax.custom_vjp` whose backward pass is
the paper's *unpooling*: each gradient value goes back to the location its switch recorded. That is also the exact
gradient of max pooling (ties go to the first maximum in row-major window order, as in torch), and it is much
faster on CPU than XLA's generic ``select_and_scatter``.

`Ops` bundles the three nonlinear pieces whose backward rule the deconvnet changes (ReLU, pooling, LCN), so that
`zfjax.network.models.apply` runs the same code for training and for every projection rule.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def conv(x: Array, w: Array, b: Array | None, stride: int, padding: int) -> Array:
    """2-D convolution, NHWC input and HWIO filters, symmetric zero padding; `b=None` skips the bias.

    Its input gradient (the conv's transpose, the deconvnet's filtering) is `conv_transpose` (`_conv_bwd`).
    """
    y = _conv(x, w, stride, padding)
    return y if b is None else y + b


def _lax_conv(x: Array, w: Array, stride: int, padding: int) -> Array:
    return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: Array, w: Array, stride: int, padding: int) -> Array:
    """`lax` convolution whose input gradient is `conv_transpose` (same values, faster and layout-stable)."""
    return _lax_conv(x, w, stride, padding)


def _conv_fwd(x, w, stride, padding):
    return _lax_conv(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, res, g):
    x, w = res
    _, pull_w = jax.vjp(lambda w: _lax_conv(x, w, stride, padding), w)  # XLA drops it when unused (a projection)
    return conv_transpose(g, w, stride, padding, x.shape[1:3]).astype(x.dtype), pull_w(g)[0]


_conv.defvjp(_conv_fwd, _conv_bwd)


PHASE_SPLIT_MIN_CHANNELS = 32
"""`conv_transpose` computes each output phase with its own convolution from this many input channels of the conv."""


def conv_transpose(g: Array, w: Array, stride: int, padding: int, in_hw: tuple[int, int]) -> Array:
    """Input gradient of a conv (its transpose): stride-1 convolutions of `g` per output phase, then depth-to-space.

    Input pixel t (+ padding) = stride * u + r receives sum_q g[u - q] * w[r + stride * q]: for each phase r a
    small correlation with the taps r, r + stride, ... (measured 1.6-1.8x faster than XLA's input-dilated
    convolution at batch 32 on CPU). With few input channels (conv1: 3) all phases are the output channels of ONE
    convolution (sub-pixel form; its kernels are zero-padded to the same number of taps); with
    `PHASE_SPLIT_MIN_CHANNELS` or more, each phase gets its own convolution with exactly its taps (no padding:
    ZFNet's conv2 transpose 1.2x faster). Stride 1 is the plain flipped-filter conv. The flipped filters are built
    explicitly in HWIO layout: left to XLA, a stride-1 conv's transposed kernel sometimes kept an OI layout that
    runs a generic loop 5-10x slower than the Eigen convolution.
    """
    s, k = stride, w.shape[0]
    n, cin, cout = g.shape[0], w.shape[2], w.shape[3]
    first = padding // s  # units u in [first, last) cover every t + padding with 0 <= t < size
    last = tuple(-(-(size + padding) // s) for size in in_hw)
    if s > 1 and k % s and cin >= PHASE_SPLIT_MIN_CHANNELS:
        phases = [[_phase(g, w[ry::s, rx::s], first, last) for rx in range(s)] for ry in range(s)]
        z = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # (n, U, ry, U', rx, C_in)
    else:
        m = -(-k // s)  # taps per phase, padded
        wp = jnp.pad(w, ((0, s * m - k), (0, s * m - k), (0, 0), (0, 0)))
        # kernel[jy, jx, co, (ry, rx, ci)] = w[ry + s * (m - 1 - jy), rx + s * (m - 1 - jx), ci, co]
        sub = wp.reshape(m, s, m, s, cin, cout)[::-1, :, ::-1].transpose(0, 2, 5, 1, 3, 4)
        z = _unit_conv(g, sub.reshape(m, m, cout, s * s * cin), first, last)
        z = z.reshape(*z.shape[:3], s, s, cin).transpose(0, 1, 3, 2, 4, 5)
    z = z.reshape(n, (last[0] - first) * s, (last[1] - first) * s, cin)
    crop = padding - s * first
    return z[:, crop:crop + in_hw[0], crop:crop + in_hw[1]]


def _phase(g: Array, taps: Array, first: int, last: tuple[int, int]) -> Array:
    """One output phase: `g` correlated with its taps w[r::s] flipped (zeros when the phase has none)."""
    if 0 in taps.shape[:2]:
        return jnp.zeros((g.shape[0], last[0] - first, last[1] - first, taps.shape[2]), g.dtype)
    return _unit_conv(g, taps[::-1, ::-1].transpose(0, 1, 3, 2), first, last)


def _unit_conv(g: Array, kernel: Array, first: int, last: tuple[int, int]) -> Array:
    """Correlate `g` with an HWIO `kernel` of T taps so that output unit u in [first, last) reads g[u - T + 1 .. u]."""
    pads = [(t - 1 - first, u - o) for t, u, o in zip(kernel.shape[:2], last, g.shape[1:3])]
    z = lax.conv_general_dilated(g, kernel, (1, 1), [(max(lo, 0), max(hi, 0)) for lo, hi in pads],
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return z[:, max(-pads[0][0], 0):, max(-pads[1][0], 0):][:, :last[0] - first, :last[1] - first]


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


def _channel_window_sum(v: Array, before: int, after: int) -> Array:
    """Sum over maps c-before..c+after of each position (zero outside the maps)."""
    c = v.shape[-1]
    padded = jnp.pad(v, ((0, 0),) * (v.ndim - 1) + ((before, after),))
    return sum(padded[..., i:i + c] for i in range(before + after + 1))


def _lcn_scale(x: Array, size: int, k: float, alpha: float) -> Array:
    """s = k + alpha * (sum of x^2 over the `size` maps around each map)."""
    half = size // 2
    return k + alpha * _channel_window_sum(x * x, half, size - 1 - half)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def lcn(x: Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75) -> Array:
    """Krizhevsky's local response normalization across maps: x / (k + alpha * sum_{size nbrs} x^2)^beta.

    `alpha` is *not* divided by `size` (torch's `LocalResponseNorm(size, alpha * size, beta, k)` is the same op).
    Its VJP is the exact gradient written out (autodiff's version ran 5-12x slower on XLA:CPU).
    """
    return x / _power(_lcn_scale(x, size, k, alpha), beta)


def _power(s: Array, beta: float) -> Array:
    """s ** beta; the usual betas through square roots (10x cheaper than pow's exp(log) on CPU, within 2 ulp)."""
    if beta == 0.75:
        root = jnp.sqrt(s)
        return root * jnp.sqrt(root)
    return jnp.sqrt(s) if beta == 0.5 else s ** beta


def _lcn_fwd(x, size, k, alpha, beta):
    """Forward and the VJP's residuals, all maps of x's shape (`zfjax.deconv` slices them per unit's window):
    the divisor n = s^beta, 2 alpha beta x n and x s^(-beta-1)."""
    s = _lcn_scale(x, size, k, alpha)
    norm = _power(s, beta)
    return x / norm, (norm, (2 * alpha * beta) * x * norm, x / (norm * s))


def _lcn_bwd(size, k, alpha, beta, res, g):
    """y_i = x_i s_i^-beta: dx_j = (g_j - 2 alpha beta x_j s_j^beta inner_j) / s_j^beta with
    inner_j = sum_{i: j in window(i)} g_i x_i s_i^(-beta-1).

    Ending in a division is deliberate: XLA treats it as expensive and so computes dx once into a buffer instead of
    fusing it into each of the nine branches of the unpooling that consumes it (3x less work at pool1 on CPU).
    """
    norm, x_norm_scaled, x_over_ns = res
    half = size // 2
    inner = _channel_window_sum(g * x_over_ns, size - 1 - half, half)
    return ((g - x_norm_scaled * inner) / norm,)


lcn.defvjp(_lcn_fwd, _lcn_bwd)


class Ops(NamedTuple):
    """The nonlinear pieces of the forward pass; their VJPs define a backward rule (see `zfjax.deconv`).

    `lcn` must be a `jax.custom_vjp` whose residuals are maps of its input's shape: the cropped projection calls its
    `fwd` rule once on the whole map and its `bwd` rule on each unit's window of the residuals.
    """
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


__all__ = ["conv", "conv_transpose",
           "max_pool", "unpool_offsets", "switches_from_offsets", "lcn", "dropout", "Ops", "PLAIN",
           "pool_output_size", "conv_output_size", "rms"]
