"""The deconvnet as the paper describes it (section 2.1), layer by layer, for tests of the fast paths.

From the activations and switches `zfjax.network.models.apply` returns: `unpool` puts each pooled value back where
its switch says, `rectify` applies the rule's ReLU backward, `transposed_filters` filters with the flipped,
transposed filters (`lcn_gradient` is LCN's backward written out). `project_reference` chains them for one unit;
`zfjax.deconv.builtin.project` must give the same projections.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from zfjax.deconv import builtin, rules, units
from zfjax.network import layers, models

Array = jax.Array


def unpool(g: Array, switches: Array, in_hw: tuple[int, int]) -> Array:
    """Put each pooled value at the flat index its switch recorded in the (H, W) pre-pool map (overlaps add up)."""
    n, _, _, c = g.shape
    flat = jnp.zeros((n, in_hw[0] * in_hw[1], c), g.dtype)
    nn, cc = jnp.arange(n)[:, None, None, None], jnp.arange(c)[None, None, None, :]
    flat = flat.at[jnp.broadcast_to(nn, g.shape), switches, jnp.broadcast_to(cc, g.shape)].add(g)
    return flat.reshape(n, in_hw[0], in_hw[1], c)


def rectify(g: Array, act: Array, rule: str) -> Array:
    """Backward through a ReLU whose output was `act` (its sign is its input's), by the rule table."""
    return rules.backward(rule, act > 0, g)


def transposed_filters(g: Array, w: Array, stride: int, padding: int, in_hw: tuple[int, int]) -> Array:
    """Filter `g` with the flipped, transposed filters `w` (HWIO): the deconvnet layer that inverts a conv."""
    k = w.shape[0]
    pads = []
    for size_in, size_out in zip(in_hw, g.shape[1:3]):
        lo = k - 1 - padding
        pads.append((lo, size_in + k - 1 - ((size_out - 1) * stride + 1) - lo))
    flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    return lax.conv_general_dilated(g, flipped, (1, 1), pads, lhs_dilation=(stride, stride),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def lcn_gradient(g: Array, x: Array, size: int, k: float, alpha: float, beta: float) -> Array:
    """Backward through y_i = x_i * s_i^-beta, s_i = k + alpha * sum_{j in window(i)} x_j^2 (written out by hand)."""
    half = size // 2
    s = k + alpha * layers.channel_window_sum(x * x, half, size - 1 - half)
    inner = layers.channel_window_sum(g * x * s ** (-beta - 1), size - 1 - half, half)  # sum over the i whose window holds j
    return g * s ** -beta - 2 * alpha * beta * x * inner


def project_reference(arch: models.Arch, params: models.Params, x: Array, layer: str, channel: int, *,
                      position=None, rule: str = "deconvnet", lcn_rule: str = "identity") -> Array:
    """`zfjax.deconv.builtin.project`, computed as the paper describes it: unpool with switches, rectify, filter with transposed filters.

    Slow and readable; for tests. Biases are not used.
    """
    builtin.backward_ops(rule, lcn_rule)
    builtin.check_layer(arch, layer)
    fwd = models.apply(arch, params, x, upto=layer)
    acts = fwd.acts[layer]
    units.check(layer, acts.shape, channel, position)
    g = units.seed(acts, channel, *units.select(acts, channel, position))
    top = next(i for i, c in enumerate(arch.convs) if layer in (c.name, c.pool_name))
    for i in reversed(range(top + 1)):
        c = arch.convs[i]
        if c.pool and (i < top or layer == c.pool_name):
            g = _unpool_block(arch, c, fwd, g, lcn_rule)
        g = rectify(g, fwd.acts[c.name], rule)
        g = transposed_filters(g, params[c.name]["w"], c.stride, c.padding, _input_hw(arch, fwd, x, i))
    return g


def _unpool_block(arch: models.Arch, c: models.Conv, fwd: models.Forward, g: Array, lcn_rule: str) -> Array:
    """Backward through conv `c`'s LCN (identity or gradient) and then its max pool (unpooling with the switches)."""
    conv_map, switches = fwd.acts[c.name], fwd.switches[c.pool_name]
    if c.lcn and arch.lcn and lcn_rule == "gradient":
        n, ch = g.shape[0], g.shape[3]
        pooled = jnp.take_along_axis(conv_map.reshape(n, -1, ch), switches.reshape(n, -1, ch), axis=1)
        g = lcn_gradient(g, pooled.reshape(g.shape), *arch.lcn_params)
    return unpool(g, switches, conv_map.shape[1:3])


def _input_hw(arch: models.Arch, fwd: models.Forward, x: Array, i: int) -> tuple[int, int]:
    """Spatial size of the map that conv number `i` reads."""
    if i == 0:
        return x.shape[1:3]
    prev = arch.convs[i - 1]
    return fwd.acts[prev.output_name].shape[1:3]


__all__ = ["project_reference", "unpool", "rectify", "transposed_filters", "lcn_gradient"]
