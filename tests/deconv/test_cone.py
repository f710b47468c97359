"""Receptive fields and cones of any function, from its jaxpr: receptive_field.Field against the gradient support
(brute force) of positive linear twins, and the cropped projection (zfjax.deconv.cone) against the whole VJP on the
shapes
that make windows hard: strides, dilation, padding, residual paths, slices, concatenation, groups; and the
functions whose cone cannot be proved, which fall back to the whole VJP."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from zfjax import deconv
from zfjax.deconv import cone
from zfjax.deconv import program as pg
from zfjax.network import models
from zfjax.network.receptive_field import Field, receptive_field

DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, k, stride=1, pad=0, dilation=1, groups=1, cout=None, w=None):
    cin = x.shape[-1]
    w = jnp.ones((k, k, cin // groups, cout or cin)) if w is None else w
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)), rhs_dilation=(dilation,) * 2,
                                    dimension_numbers=DN, feature_group_count=groups)


def _sum_pool(x, k, stride, pad=0):
    return lax.reduce_window(x, 0.0, lax.add, (1, k, k, 1), (1, stride, stride, 1),
                             ((0, 0), (pad, pad), (pad, pad), (0, 0)))


# Positive linear functions (all weights 1, sum pools): the gradient support of a unit is exactly its field.
LINEAR = {
    "strided convs": lambda x: _conv(_conv(x, 5, 2, 2), 3, 2, 0),
    "dilated conv": lambda x: _conv(_conv(x, 3, 1, 1), 3, 1, 2, dilation=2),
    "pools with padding": lambda x: _sum_pool(_conv(x, 3, 1, 1), 3, 2, 1),
    "residual": lambda x: _conv(x, 3, 1, 1) + _conv(_conv(x, 3, 1, 1), 3, 1, 1),
    "strided shortcut": lambda x: _conv(_conv(x, 3, 2, 1), 3, 1, 1) + _conv(x, 1, 2, 0),
    "pad and slice": lambda x: _conv(jnp.pad(x, ((0, 0), (3, 1), (0, 2), (0, 0))), 3)[:, 1::2, ::3],
    "concat channels": lambda x: jnp.concatenate([_conv(x, 3, 1, 1), _conv(x, 5, 1, 2)], axis=3),
    "groups": lambda x: _conv(_conv(x, 3, 1, 1, cout=4), 3, 1, 1, groups=2),
    "1x1 einsum": lambda x: jnp.einsum("nhwc,cd->nhwd", _conv(x, 3, 2, 1), jnp.ones((x.shape[-1], 5))),
    "global branch": lambda x: _conv(x, 3, 1, 1) * x.mean((1, 2), keepdims=True),
}


def _support(fn, shape, positions) -> np.ndarray:
    x = jnp.ones(shape)
    out, pull = jax.vjp(fn, x)
    seeds = jnp.zeros((len(positions), *out.shape)).at[jnp.arange(len(positions)), 0, positions[:, 0],
                                                      positions[:, 1], :].set(1.0)  # every channel there
    return np.asarray(jax.vmap(lambda s: pull(s)[0])(seeds)[:, 0].sum(-1) > 0)


@pytest.mark.parametrize("name", LINEAR)
def test_field_of_any_function_matches_the_gradient_support(name):
    fn = LINEAR[name]
    shape = (1, 23, 26, 2)
    field = Field(fn, shape[1:])
    h, w = field.map_shape[:2]
    positions = np.array([[0, 0], [h - 1, w - 1], [h // 2, w // 3], [0, w - 1], [h - 1, 0]])
    for pos, support in zip(positions, _support(fn, shape, positions)):
        y0, y1, x0, x1 = field.window(pos)
        want = np.zeros_like(support)
        want[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(support, want, err_msg=f"{name} {tuple(pos)}")
    sizes = [field.window((i, j)) for i in range(h) for j in range(w)]
    assert field.size() == (max(s[1] - s[0] for s in sizes), max(s[3] - s[2] for s in sizes))


def test_field_of_a_flatten_is_the_whole_image_and_builtin_nets_agree():
    dense = lambda x: (x.reshape(1, -1) @ jnp.ones((23 * 26 * 2, 6))).reshape(1, 1, 1, 6)  # noqa: E731
    assert Field(dense, (23, 26, 2)).window((0, 0)) == (0, 23, 0, 26)
    arch = models.get("alexnet", input_shape=(99, 99, 3), num_classes=10)
    params = models.init(arch, jax.random.key(0))
    for layer in ("pool1", "conv3", "pool5"):
        field = Field(lambda x: models.apply(arch, params, x, upto=layer).acts[layer], arch.input_shape)
        h, w = field.map_shape[:2]
        for pos in [(0, 0), (h - 1, w - 1), (h // 2, w // 3)]:
            assert field.window(pos) == receptive_field(arch, layer, pos), (layer, pos)
    with pytest.raises(ValueError, match="outside the 3x3 map"):
        Field(lambda x: _conv(x, 3), (5, 5, 1)).window((3, 0))


def _relu_net(name):
    """`LINEAR[name]` with random weights and a ReLU after every conv (the shapes of the windows unchanged); the
    n-th conv of a call always gets the same weights."""
    keys = list(jax.random.split(jax.random.key(7), 16))
    calls = []

    def conv(x, k, stride=1, pad=0, dilation=1, groups=1, cout=None):
        cin = x.shape[-1]
        calls.append(None)
        w = jax.random.normal(keys[len(calls) - 1], (k, k, cin // groups, cout or cin)) / k
        return jax.nn.relu(_conv(x, k, stride, pad, dilation, groups, cout, w))

    nets = {
        "strided convs": lambda x: conv(conv(x, 5, 2, 2, cout=4), 3, 2, 0),
        "dilated conv": lambda x: conv(conv(x, 3, 1, 1, cout=4), 3, 1, 2, dilation=2),
        "pools with padding": lambda x: nn.max_pool(conv(x, 3, 1, 1, cout=4), (3, 3), (2, 2), ((1, 1), (1, 1))),
        "residual": lambda x: jnp.maximum(0.0, conv(x, 3, 1, 1, cout=2) + conv(conv(x, 3, 1, 1), 3, 1, 1)),
        "strided shortcut": lambda x: jnp.where(conv(conv(x, 3, 2, 1), 3, 1, 1) + conv(x, 1, 2, 0) > 0,
                                                conv(conv(x, 3, 2, 1), 3, 1, 1) + conv(x, 1, 2, 0), 0),
        "pad and slice": lambda x: conv(jnp.pad(x, ((0, 0), (3, 1), (0, 2), (0, 0))), 3, cout=4)[:, 1::2, ::3],
        "concat channels": lambda x: jnp.concatenate([conv(x, 3, 1, 1), conv(x, 5, 1, 2)], axis=3),
        "groups": lambda x: conv(conv(x, 3, 1, 1, cout=4), 3, 1, 1, groups=2),
        "global branch": lambda x: conv(x, 3, 1, 1) * jax.nn.sigmoid(x.mean((1, 2), keepdims=True)),
        "transposed conv": lambda x: jax.nn.relu(lax.conv_transpose(conv(x, 3, 2, 1, cout=4), jnp.ones((3, 3, 4, 3)),
                                                                    (2, 2), "SAME", dimension_numbers=DN)),
    }
    def fn(x):
        calls.clear()
        return nets[name](x)
    return fn


CROPPABLE = ["strided convs", "dilated conv", "pools with padding", "residual", "strided shortcut", "pad and slice",
             "concat channels", "groups"]


@pytest.mark.parametrize("name", CROPPABLE)
def test_cropped_projection_equals_the_whole_vjp(name):
    fn = _relu_net(name)
    x = jax.random.normal(jax.random.key(1), (2, 23, 26, 2))
    shape = jax.eval_shape(fn, x).shape
    prog = pg.from_jaxpr(pg.trace_jaxpr(fn, x)[0], deep=True)
    assert cone.Cone(prog, "deconvnet").input_window()  # the cone is proved
    positions = [None, (0, 0), (shape[1] - 1, shape[2] - 1), (shape[1] // 2, 1)]
    for rule in ("deconvnet", "guided", "saliency"):
        for pos in positions:
            a = deconv.project_fn(fn, x, 1, pos, rule=rule, crop=True)
            b = deconv.project_fn(fn, x, 1, pos, rule=rule, crop=False)
            scale = float(np.abs(b).max())
            np.testing.assert_allclose(a, b, atol=1e-5 * max(scale, 1e-6), rtol=1e-5, err_msg=f"{rule} {pos}")


@pytest.mark.parametrize("name", ["global branch", "transposed conv"])
def test_unprovable_cones_fall_back_to_the_whole_vjp(name):
    fn = _relu_net(name)
    x = jax.random.normal(jax.random.key(1), (1, 23, 26, 2))
    with pytest.raises(cone.NotCroppable):
        deconv.project_fn(fn, x, 1, crop=True)
    np.testing.assert_array_equal(deconv.project_fn(fn, x, 1), deconv.project_fn(fn, x, 1, crop=False))


def test_vmapped_cropped_projections_equal_a_loop():
    fn = _relu_net("pools with padding")
    x = jax.random.normal(jax.random.key(2), (1, 23, 26, 2))
    many = jax.jit(jax.vmap(lambda c: deconv.project_fn(fn, x, c, crop=True)))(jnp.arange(4))
    for c in range(4):
        np.testing.assert_allclose(many[c], deconv.project_fn(fn, x, c, crop=False), rtol=1e-5, atol=1e-6)
