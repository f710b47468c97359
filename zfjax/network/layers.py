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
import numpy as np
from jax import lax

from zfjax.network import switches

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


@jax.custom_vjp
def dense(x: Array, w: Array, b: Array) -> Array:
    """A fully connected layer, x (N, in) @ w (in, out) + b; its input gradient is `_times_transposed`."""
    return x @ w + b


def _dense_fwd(x, w, b):
    return x @ w + b, (x, w)


def _dense_bwd(res, g):
    x, w = res
    return _times_transposed(g, w), x.T @ g, jnp.sum(g, axis=0)


dense.defvjp(_dense_fwd, _dense_bwd)


def _times_transposed(g: Array, w: Array) -> Array:
    """g @ w.T computed as (w @ g.T).T: XLA:CPU runs the dot with w on the right 10-20x slower (ZFNet fc6's input
    gradient at batch 32: 340 -> 17 ms on one core). The transpose goes through a 3-D view, or XLA folds it into
    the dot and swaps the operands back."""
    out = lax.dot_general(w, g, (((1,), (1,)), ((), ())))  # (in, N)
    return out[None].transpose(2, 0, 1).reshape(g.shape[0], w.shape[0])


PHASE_SPLIT_MIN_CHANNELS = 32
"""`conv_transpose` computes each output phase with its own convolution from this many input channels of the conv."""


def conv_transpose(g: Array, w: Array, stride: int, padding: int, in_hw: tuple[int, int]) -> Array:
    """Input gradient of a conv (its transpose): stride-1 convolutions of `g` per output phase, then depth-to-space.

    Input pixel t (+ padding) = stride * u + r receives sum_q g[u - q] * w[r + stride * q]: for each phase r a
    small correlation with the taps r, r + stride, ... (measured 1.6-1.8x faster than XLA's input-dilated
    convolution at batch 32 on CPU). With few input channels (conv1: 3) all phases are the output channels of ONE
    convolution (sub-pixel form; its kernels are zero-padded to the same number of taps), over blocks of
    `_subpixel_block` units so that it has enough output channels; with `PHASE_SPLIT_MIN_CHANNELS` or more, each
    phase gets its own convolution with exactly its taps (no padding: ZFNet's conv2 transpose 1.2x faster). Stride
    1 is the plain flipped-filter conv. The flipped filters are built explicitly in HWIO layout: left to XLA, a
    stride-1 conv's transposed kernel sometimes kept an OI layout that runs a generic loop 5-10x slower than the
    Eigen convolution. A map narrower than twice the kernel (a cropped projection's top stages: 1x1 to 5x5) goes
    through `_matmul_transpose` instead, one matmul with every tap then shifted sums (2-4x faster there).
    """
    s, k = stride, w.shape[0]
    if max(g.shape[1:3]) < 2 * k:
        return _matmul_transpose(g, w, stride, padding, in_hw)
    n, cin = g.shape[0], w.shape[2]
    first = padding // s  # units u in [first, last) cover every t + padding with 0 <= t < size
    last = tuple(-(-(size + padding) // s) for size in in_hw)
    if s > 1 and k % s and cin >= PHASE_SPLIT_MIN_CHANNELS:
        phases = [[_phase(g, w[ry::s, rx::s], first, last) for rx in range(s)] for ry in range(s)]
        z, block, start = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2), 1, first
    else:
        block = _subpixel_block(s, cin)
        start, stop = first // block, tuple(-(-u // block) for u in last)
        z = _unit_conv(g, _subpixel_kernel(w, s, block), start, stop, block)
        z = z.reshape(*z.shape[:3], s * block, s * block, cin).transpose(0, 1, 3, 2, 4, 5)
    z = z.reshape(n, z.shape[1] * z.shape[2], z.shape[3] * z.shape[4], cin)  # (n, U, ry, U', rx, C_in) -> pixels
    crop = padding - s * block * start
    return z[:, crop:crop + in_hw[0], crop:crop + in_hw[1]]


TRANSPOSE_CHUNK_BYTES = 16 << 20
"""`conv_transpose_units` keeps each chunk's matmul product about this size on CPU (4 of ZFNet conv1's 67x67
windows: 32 conv5 cones 42 -> 34 ms; 2 or 8 at a time were slower)."""


def conv_transpose_units(g: Array, w: Array, stride: int, padding: int, in_hw: tuple[int, int], *,
                         unpool: tuple[Array, int, int] | None = None, rectify: bool = False) -> Array:
    """`conv_transpose` of many units' maps (a projection's stage, vmapped over units and images), on CPU for a
    strided conv with few input channels (an image's conv1) as a matmul with every tap then per-phase sums, over
    cache-sized chunks of the maps: the vmapped axes are folded into the maps' batch (`jax.custom_batching`), so a
    user's `jax.vmap` over units is chunked too. Elsewhere it is `conv_transpose`. Its own VJP is the plain
    matmul form's (reverse-mode autodiff does not go through the custom batching).

    With `unpool` = (offsets, window, pool stride), `g` is the signal at a max pool's output, unpooled first with
    those offsets (`unpool_offsets`) to the conv's output size; `rectify` then takes max(g, 0) (the deconvnet's
    rectification). Both run inside each chunk, so the unpooled maps are never written out whole (ZFNet's pool1
    and conv1 for 32 conv5 cones alone: 49 -> 42 ms; the 32 projections 115 -> 112 ms).
    """
    k, cin = w.shape[0], w.shape[2]
    out_hw = tuple(conv_output_size(n, k, stride, padding) for n in in_hw)
    spec = _Units(stride, padding, tuple(in_hw), out_hw, None if unpool is None else unpool[1:], rectify)
    maps = (g,) if unpool is None else (g, unpool[0])
    if (jax.default_backend() != "cpu" or stride == 1 or cin >= PHASE_SPLIT_MIN_CHANNELS
            or max(out_hw) < 2 * k):
        return conv_transpose(_transpose_input(spec, maps), w, stride, padding, in_hw)
    return _units_transpose(spec, maps, w)


class _Units(NamedTuple):
    """Static geometry of `conv_transpose_units`: the conv's, the pool to undo first (window, stride) or None."""
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    pool: tuple[int, int] | None
    rectify: bool


def _transpose_input(spec: _Units, maps: tuple[Array, ...]) -> Array:
    """The transpose's input from `maps` (the signal, and the pool's offsets if any): unpooled, then rectified."""
    g = maps[0] if spec.pool is None else unpool_offsets(maps[0], maps[1], spec.out_hw, *spec.pool)
    return jnp.maximum(g, jnp.zeros((), g.dtype)) if spec.rectify else g


def _units_matmul(spec: _Units, maps: tuple[Array, ...], w: Array) -> Array:
    """`conv_transpose_units` unchunked: `_matmul_transpose` of `_transpose_input`."""
    return _matmul_transpose(_transpose_input(spec, maps), w, spec.stride, spec.padding, spec.in_hw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _units_transpose(spec: _Units, maps: tuple[Array, ...], w: Array) -> Array:
    """The chunked transpose, differentiable: its VJP is the unchunked `_units_matmul`'s."""
    return _chunked_transpose(spec)(maps, w)


def _units_transpose_fwd(spec, maps, w):
    return _units_transpose(spec, maps, w), (maps, w)


def _units_transpose_bwd(spec, res, ct):
    return jax.vjp(functools.partial(_units_matmul, spec), *res)[1](ct)


_units_transpose.defvjp(_units_transpose_fwd, _units_transpose_bwd)


@functools.lru_cache(maxsize=None)
def _chunked_transpose(spec: _Units):
    """The chunked matmul transpose for one geometry, with a vmap rule that folds batched axes into the maps."""

    @jax.custom_batching.custom_vmap
    def chunked(maps, w):
        m = -(-w.shape[0] // spec.stride)
        per_map = spec.out_hw[0] * spec.out_hw[1] * (m * spec.stride) ** 2 * w.shape[2] * w.dtype.itemsize
        return lax.map(lambda one: _units_matmul(spec, tuple(a[None] for a in one), w)[0], maps,
                       batch_size=max(1, TRANSPOSE_CHUNK_BYTES // per_map))  # per_map: one map's product bytes

    @chunked.def_vmap
    def rule(axis_size, in_batched, maps, w):
        maps_batched, w_batched = in_batched
        if w_batched:  # per-unit filters: nothing shared to chunk over
            axes = (tuple(0 if b else None for b in maps_batched), 0)
            return jax.vmap(functools.partial(_units_matmul, spec), axes)(maps, w), True
        maps = tuple((a if b else jnp.broadcast_to(a, (axis_size, *a.shape))).reshape(-1, *a.shape[-3:])
                     for a, b in zip(maps, maps_batched))
        out = chunked(maps, w)
        return out.reshape(axis_size, -1, *out.shape[1:]), True

    return chunked


def _matmul_transpose(g: Array, w: Array, stride: int, padding: int, in_hw: tuple[int, int]) -> Array:
    """The transpose as g (.., C_out) times every tap's filter, the taps zero-padded to m = ceil(k / s) per phase and
    ordered (q_y, q_x, r_y, r_x, C_in), then input pixel s u + r (+ padding) = sum over q of product[u - q, q, r]:
    m * m shifted slices, each a contiguous run of s * s * C_in values per pixel, then depth-to-space."""
    s, k, cin, cout = stride, *w.shape[1:]
    n, h, wd = g.shape[:3]
    m = -(-k // s)
    taps = jnp.pad(w, ((0, s * m - k), (0, s * m - k), (0, 0), (0, 0)))
    taps = taps.reshape(m, s, m, s, cin, cout).transpose(5, 0, 2, 1, 3, 4).reshape(cout, -1)
    product = (g.reshape(-1, cout) @ taps).reshape(n, h, wd, m, m, s * s * cin)
    rows = [max(size + m - 1, -(-(t + padding) // s)) for size, t in zip((h, wd), in_hw)]  # units per phase
    shifted = [jnp.pad(product[:, :, :, qy, qx], ((0, 0), (qy, rows[0] - h - qy), (qx, rows[1] - wd - qx), (0, 0)))
               for qy in range(m) for qx in range(m)]
    out = functools.reduce(jnp.add, shifted)
    out = out.reshape(n, rows[0], rows[1], s, s, cin).transpose(0, 1, 3, 2, 4, 5)
    out = out.reshape(n, rows[0] * s, rows[1] * s, cin)
    return out[:, padding:padding + in_hw[0], padding:padding + in_hw[1]]


def _subpixel_block(stride: int, cin: int) -> int:
    """Units per block of the sub-pixel convolution: 2 x 2 when a unit's phases hold 16 values or fewer (ZFNet's
    conv1: 12 -> 48 output channels, 1.3x faster for cropped projections despite 1.6x the multiply-adds)."""
    return 2 if stride > 1 and stride * stride * cin <= 16 else 1


def _subpixel_kernel(w: Array, stride: int, block: int) -> Array:
    """HWIO kernel of the sub-pixel convolution over blocks of `block` units: tap i of a block of units B V + b reads
    g[B V - (m - 1) + i] (m = taps per phase) into its pixel s b + r with the filter tap r + s (b + m - 1 - i)."""
    s, k, cin, cout = stride, *w.shape[1:]
    m = -(-k // s)
    taps, pixels = m - 1 + block, s * block
    q = (np.arange(pixels)[None, :] // s) + m - 1 - np.arange(taps)[:, None]  # (taps, pixels)
    index = np.where((q >= 0) & (q < m), np.arange(pixels)[None, :] % s + s * q, s * m)  # s * m: a zero tap
    wp = jnp.pad(w, ((0, s * m + 1 - k), (0, s * m + 1 - k), (0, 0), (0, 0)))
    kernel = wp[index][:, :, index]  # (taps, pixels, taps, pixels, cin, cout)
    return kernel.transpose(0, 2, 5, 1, 3, 4).reshape(taps, taps, cout, pixels * pixels * cin)


def _phase(g: Array, taps: Array, first: int, last: tuple[int, int]) -> Array:
    """One output phase: `g` correlated with its taps w[r::s] flipped (zeros when the phase has none)."""
    if 0 in taps.shape[:2]:
        return jnp.zeros((g.shape[0], last[0] - first, last[1] - first, taps.shape[2]), g.dtype)
    return _unit_conv(g, taps[::-1, ::-1].transpose(0, 1, 3, 2), first, last)


def _unit_conv(g: Array, kernel: Array, start: int, stop: tuple[int, int], block: int = 1) -> Array:
    """Correlate `g` with an HWIO `kernel` of T taps at stride `block`: output o in [0, stop - start) (per axis)
    reads g[block * (start + o) - (T - block) + i] for i < T (zeros outside g)."""
    z, pads = g, []
    for axis, (t, end) in enumerate(zip(kernel.shape[:2], stop), start=1):
        lo, hi = t - block - block * start, block * end - g.shape[axis]  # zeros before / after g
        z = lax.slice_in_dim(z, max(-lo, 0), z.shape[axis], axis=axis)
        pads.append((max(lo, 0), max(hi, 0)))
    z = lax.conv_general_dilated(z, kernel, (block, block), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return z[:, :stop[0] - start, :stop[1] - start]


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
    _, h, w, _ = x.shape
    oh, ow = (pool_output_size(s, window, stride, ceil_mode) for s in (h, w))
    pads = ((0, 0), (0, max(0, (oh - 1) * stride + window - h)), (0, max(0, (ow - 1) * stride + window - w)), (0, 0))
    return switches.offsets(x, switches.Window((1, window, window, 1), (1, stride, stride, 1), pads))


def unpool_offsets(g: Array, offset: Array, in_hw: tuple[int, int], window: int, stride: int) -> Array:
    """The paper's unpooling: put each value of `g` where its switch (`offset` in its window) says, zeros elsewhere.

    Computed per output phase (y mod stride, x mod stride): an output pixel can only receive the pooled units whose
    window covers it, a few shifted slices of `g` (4, 2, 2 or 1 for 3x3 windows at stride 2), so each value of `g`
    (and whatever XLA fuses into it, such as LCN's gradient) is read 9/4 times per output pixel instead of 9.
    """
    n, oh, ow, c = g.shape
    s, k = stride, window
    taps = -(-k // s)  # most pooled units covering one output pixel, per axis
    q = [-(-max(h, (o - 1) * s + k) // s) for h, o in zip(in_hw, (oh, ow))]  # output rows / cols per phase
    pads = ((0, 0), (taps - 1, q[0] - oh), (taps - 1, q[1] - ow), (0, 0))
    gp, op = jnp.pad(g, pads), jnp.pad(offset, pads, constant_values=-1)
    zero = jnp.zeros((), g.dtype)

    def phase(a: int, b: int) -> Array:
        """Output pixels (s * i + a, s * j + b): the unit i - ty, j - tx at window offset (a + s ty, b + s tx)."""
        out = None
        for ty in range(-(-(k - a) // s)):
            for tx in range(-(-(k - b) // s)):
                cut = (slice(None), slice(taps - 1 - ty, taps - 1 - ty + q[0]),
                       slice(taps - 1 - tx, taps - 1 - tx + q[1]))
                term = jnp.where(op[cut] == (a + s * ty) * k + b + s * tx, gp[cut], zero)
                out = term if out is None else out + term
        return out

    rows = [jnp.stack([phase(a, b) for b in range(s)], axis=3) for a in range(s)]  # each (n, qy, qx, s, c)
    out = jnp.stack(rows, axis=2).reshape(n, q[0] * s, q[1] * s, c)
    return out[:, :in_hw[0], :in_hw[1]]


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


def channel_window_sum(v: Array, before: int, after: int) -> Array:
    """Sum over maps c-before..c+after of each position (zero outside the maps)."""
    c = v.shape[-1]
    padded = jnp.pad(v, ((0, 0),) * (v.ndim - 1) + ((before, after),))
    return sum(padded[..., i:i + c] for i in range(before + after + 1))


def _lcn_scale(x: Array, size: int, k: float, alpha: float) -> Array:
    """s = k + alpha * (sum of x^2 over the `size` maps around each map)."""
    half = size // 2
    return k + alpha * channel_window_sum(x * x, half, size - 1 - half)


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
    inner = channel_window_sum(g * x_over_ns, size - 1 - half, half)
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


__all__ = ["conv", "conv_transpose", "conv_transpose_units", "dense", "channel_window_sum",
           "max_pool", "unpool_offsets", "switches_from_offsets", "lcn", "dropout", "Ops", "PLAIN",
           "pool_output_size", "conv_output_size", "rms"]
