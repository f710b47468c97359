"""The fast formulations behind projections and training give the same numbers as the plain ones.

- `deconv.project` crops each unit's backward pass to its receptive-field cone: equal to the whole-network VJP
  (`crop=False`) for a conv, a pool and the top layer, rule and LCN rule, at corners and edges, under jit and vmap;
- `layers.conv`'s stride > 1 input gradient is the sub-pixel form: equal to `jax.vjp` of `lax.conv` (input and
  filter gradients); so is `layers.conv_transpose_units` (matmul then phase sums, vmapped axes in chunks);
- `layers.lcn`'s hand-written VJP: equal to autodiff of the formula; `layers.dense`'s VJP: equal to the matmul's;
- batches go through `models.map_chunks` in chunks of images (cones in larger chunks than their forwards): equal
  to one image at a time.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from zfjax import deconv
from zfjax.deconv import builtin
from zfjax.network import layers, models


@pytest.fixture(autouse=True, scope="module")
def float32_convolutions():
    with jax.default_matmul_precision("highest"):
        yield


def _close(got, want, tol=1e-5):
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale + 1e-30)


def _lax_conv(stride: int, padding: int):
    """The plain `lax` convolution (NHWC, HWIO) the fast forms are checked against."""
    return lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2,
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_cropped_projection_equals_whole_network_vjp(project_jit):
    """ZFNet at 67x67: stride-2 convs, ceil pools with partial windows; a conv, a pool with LCN, the top layer."""
    arch = models.get("zfnet", init="fan_in", input_shape=(67, 67, 3), num_classes=10)
    params = models.init(arch, jax.random.key(0))
    params = {n: {"w": p["w"], "b": p["b"] + 0.05} for n, p in params.items()}
    x = jax.random.uniform(jax.random.key(1), (2, *arch.input_shape), minval=-1.0, maxval=1.0)
    combos = itertools.cycle(itertools.product(deconv.RULES, deconv.LCN_RULES))
    for layer in ("conv1", "pool2", "conv5"):
        h, w = arch.shapes()[layer][:2]
        for position in (None, np.array([[0, 0], [h - 1, w - 1]]), np.array([[h - 1, 0], [h // 2, w - 1]])):
            rule, lcn_rule = next(combos)
            kw = dict(position=position, rule=rule, lcn_rule=lcn_rule)
            want = project_jit(arch, params, x, layer, 3, crop=False, **kw)
            got = project_jit(arch, params, x, layer, 3, crop=True, **kw)
            assert np.all(np.isfinite(np.asarray(got)))
            _close(got, want)


@pytest.mark.parametrize("crop", [True, False])
def test_projections_of_a_batch_in_chunks_equal_one_image_at_a_time(crop, project_jit):
    """6 images: chunks of `models.CPU_CHUNK` (4) with a padded last chunk, per-image and strongest positions."""
    arch = models.get("zfnet", init="fan_in", input_shape=(67, 67, 3), num_classes=10)
    params = models.init(arch, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (6, *arch.input_shape), minval=-1.0, maxval=1.0)
    rows = np.arange(6)[:, None] % 2 + np.array([[0, 1]])  # inside the 3x3 pool2 map
    for position in (None, rows):
        got = project_jit(arch, params, x, "pool2", 5, position=position, crop=crop)
        want = [project_jit(arch, params, x[i:i + 1], "pool2", 5, crop=crop,
                            position=None if position is None else position[i]) for i in range(6)]
        _close(got, jnp.concatenate(want))


def test_cones_in_chunks_of_images_equal_one_image_at_a_time(monkeypatch, project_jit):
    """7 images, cones pulled back 4 images at a time (the last chunk padded), their forwards 2 at a time."""
    monkeypatch.setattr(builtin, "CPU_CONE_CHUNK", 4)
    monkeypatch.setattr(models, "CPU_CHUNK", 2)
    arch = models.get("zfnet", init="fan_in", input_shape=(67, 67, 3), num_classes=10)
    params = models.init(arch, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (7, *arch.input_shape), minval=-1.0, maxval=1.0)
    rows = np.arange(7)[:, None] % 2 + np.array([[0, 1]])
    chunked = jax.jit(lambda p, x, pos: deconv.project(arch, p, x, "pool2", 5, position=pos, crop=True))
    for position in (None, rows):
        want = [project_jit(arch, params, x[i:i + 1], "pool2", 5, crop=True,
                            position=None if position is None else position[i]) for i in range(7)]
        _close(chunked(params, x, position), jnp.concatenate(want))


def test_map_chunks_equals_one_call():
    x = jax.random.normal(jax.random.key(2), (7, 3, 2))
    got = models.map_chunks(lambda a, b: (a * 2, b.sum(axis=(1, 2))), x, x + 1, chunk=3)
    np.testing.assert_array_equal(got[0], x * 2)
    np.testing.assert_array_equal(got[1], (x + 1).sum(axis=(1, 2)))


def test_cropped_projection_under_jit_vmap_matches_project_many():
    arch = models.get("zfnet", init="fan_in", input_shape=(67, 67, 3), num_classes=10)
    params = models.init(arch, jax.random.key(2))
    image = jax.random.uniform(jax.random.key(3), (67, 67, 3), minval=-1.0, maxval=1.0)
    channels = jnp.arange(12)
    user = jax.jit(jax.vmap(lambda p, c: deconv.project(arch, p, image[None], "conv5", c, lcn_rule="gradient",
                                                        crop=True)[0], in_axes=(None, 0)))
    many = deconv.project_many(arch, params, image, "conv5", np.arange(12), lcn_rule="gradient", crop=False)
    _close(user(params, channels), many.projections)


_SHAPES = [((32, 33), 7, 2, 1), ((21, 21), 5, 2, 0), ((17, 16), 3, 2, 1), ((19, 20), 4, 3, 2), ((12, 12), 2, 2, 0),
           ((13, 11), 3, 1, 1), ((9, 10), 5, 1, 0), ((8, 9), 3, 1, 3), ((15, 14), 3, 2, 4), ((10, 10), 1, 1, 0),
           ((11, 12), 1, 2, 0), ((13, 13), 2, 3, 1),
           ((5, 5), 3, 1, 1), ((3, 3), 3, 1, 0), ((7, 6), 3, 2, 1), ((11, 11), 7, 2, 1), ((6, 7), 4, 3, 2)]  # small


@pytest.mark.parametrize("hw, kernel, stride, padding, channels", [
    *((*shape, c) for shape in _SHAPES for c in (3, layers.PHASE_SPLIT_MIN_CHANNELS)),  # sub-pixel / per phase
    # one map takes the same paths as three except at stride 3 (2x2 blocks of units there, none for three maps)
    *((*shape, 1) for shape in _SHAPES if shape[2] == 3 and min(shape[0]) >= 2 * shape[1])])
def test_conv_transpose_vjp_equals_lax_vjp(hw, kernel, stride, padding, channels):
    """Each side compiled whole (one program, not one per operation), apart so XLA cannot share their work."""
    x = jax.random.normal(jax.random.key(4), (2, *hw, channels))
    w = jax.random.normal(jax.random.key(5), (kernel, kernel, channels, 5))
    plain = _lax_conv(stride, padding)
    g = jax.random.normal(jax.random.key(6), jax.eval_shape(plain, x, w).shape)

    def values_and_vjp(f):
        return jax.jit(lambda x, w, g: (lambda y, pull: (y, *pull(g)))(*jax.vjp(f, x, w)))(x, w, g)

    y, dx, dw = values_and_vjp(plain)
    y2, dx2, dw2 = values_and_vjp(lambda x, w: layers.conv(x, w, None, stride, padding))
    np.testing.assert_array_equal(y2, y)
    _close(dx2, dx, 1e-6)
    _close(dw2, dw, 1e-6)


@pytest.mark.parametrize("hw, kernel, stride, padding, channels", [
    ((32, 33), 7, 2, 1, 3), ((21, 21), 5, 2, 0, 1), ((19, 20), 4, 3, 2, 3), ((15, 14), 3, 2, 4, 3),
    ((11, 12), 1, 2, 0, 1)])
def test_conv_transpose_units_under_vmap_equals_lax_vjp(hw, kernel, stride, padding, channels):
    """Units x images vmapped (the batched axes folded into chunks), per-unit filters, and its own VJP."""
    w = jax.random.normal(jax.random.key(5), (kernel, kernel, channels, 6))
    x = jnp.zeros((1, *hw, channels))
    plain = _lax_conv(stride, padding)
    out_shape = jax.eval_shape(plain, x, w).shape
    g = jax.random.normal(jax.random.key(6), (7, 2, *out_shape))  # 7 units x 2 images, each one map
    want = jax.vmap(jax.vmap(lambda g, w: jax.vjp(lambda x: plain(x, w), x)[1](g)[0], (0, None)), (0, None))
    units = functools.partial(layers.conv_transpose_units, stride=stride, padding=padding, in_hw=hw)
    _close(jax.jit(jax.vmap(jax.vmap(units, (0, None)), (0, None)))(g, w), jax.jit(want)(g, w), 1e-6)
    ws = jnp.stack([w, 2 * w])
    per_unit = jax.jit(jax.vmap(lambda g, w: want(g[None, None], w)[0, 0]))
    _close(jax.jit(jax.vmap(units))(g[:2, 0], ws), per_unit(g[:2, 0], ws), 1e-6)
    loss = lambda f: jax.jit(jax.grad(lambda g, w: jnp.sum(f(g, w) ** 2), (0, 1)))  # noqa: E731
    whole = functools.partial(layers.conv_transpose, stride=stride, padding=padding, in_hw=hw)
    for got, ref in zip(loss(units)(g[0, :, 0], w), loss(whole)(g[0, :, 0], w)):
        _close(got, ref, 1e-5)


@pytest.mark.parametrize("hw, kernel, stride, padding, channels", [((32, 33), 7, 2, 1, 3), ((15, 14), 3, 1, 1, 2)])
def test_conv_transpose_units_unpools_and_rectifies_in_its_chunks(hw, kernel, stride, padding, channels, monkeypatch):
    """`unpool` + `rectify` == unpool_offsets, max(., 0), then lax's VJP: per-unit or shared offsets, per-unit filters
    and the VJP; a strided conv1-like case in chunks of 3 of its 14 maps (the last one short), and a stride-1 case
    through `conv_transpose`."""
    monkeypatch.setattr(layers, "TRANSPOSE_CHUNK_BYTES", 3 * 14 * 15 * 8 * 8 * 3 * 4)  # 3 of the first case's maps
    w = jax.random.normal(jax.random.key(5), (kernel, kernel, channels, 6))
    x = jnp.zeros((1, *hw, channels))
    plain = _lax_conv(stride, padding)
    out_hw = jax.eval_shape(plain, x, w).shape[1:3]
    maps = jax.random.normal(jax.random.key(6), (7, 2, 1, *out_hw, 6))  # 7 units x 2 images, each one map
    offsets = jax.vmap(jax.vmap(lambda a: layers.max_pool(a, 3, 2, True)[1]))(maps)
    g = jax.random.normal(jax.random.key(7), offsets.shape)

    def want(g, offset, w):
        signal = jnp.maximum(layers.unpool_offsets(g, offset, out_hw, 3, 2), 0.0)
        return jax.vjp(lambda x: plain(x, w), jnp.zeros((len(g), *hw, channels)))[1](signal)[0]

    def units(g, offset, w):
        return layers.conv_transpose_units(g, w, stride, padding, hw, unpool=(offset, 3, 2), rectify=True)

    per_unit = jax.jit(jax.vmap(jax.vmap(units, (0, 0, None)), (0, 0, None)))
    _close(per_unit(g, offsets, w), jax.vmap(jax.vmap(want, (0, 0, None)), (0, 0, None))(g, offsets, w), 1e-6)
    shared = jax.vmap(units, (0, None, None))(g[:, 0], offsets[0, 0], w)  # one image's switches, many units
    _close(shared, jax.vmap(want, (0, None, None))(g[:, 0], offsets[0, 0], w), 1e-6)
    ws = jnp.stack([w, 2 * w])
    _close(jax.vmap(units)(g[:2, 0], offsets[:2, 0], ws), jax.vmap(want)(g[:2, 0], offsets[:2, 0], ws), 1e-6)
    loss = lambda f: jax.grad(lambda g, w: jnp.sum(f(g, offsets[0, :, 0], w) ** 2), (0, 1))  # noqa: E731
    for got, ref in zip(loss(units)(g[0, :, 0], w), loss(want)(g[0, :, 0], w)):
        _close(got, ref, 1e-5)


@pytest.mark.parametrize("shape", [(32, 9216, 40), (5, 7, 3)])
def test_dense_vjp_equals_autodiff_of_the_matmul(shape):
    n, fan_in, fan_out = shape
    x, w, b = (jax.random.normal(jax.random.key(i), s) for i, s in enumerate([(n, fan_in), (fan_in, fan_out),
                                                                                 (fan_out,)]))
    plain = lambda x, w, b: x @ w + b  # noqa: E731
    y, pull = jax.vjp(plain, x, w, b)
    y2, pull2 = jax.vjp(layers.dense, x, w, b)
    np.testing.assert_array_equal(y2, y)
    g = jax.random.normal(jax.random.key(9), y.shape)
    for got, want in zip(pull2(g), pull(g)):
        _close(got, want, 1e-6)


def test_lcn_vjp_equals_autodiff_of_the_formula():
    v = jax.random.normal(jax.random.key(7), (2, 3, 3, 9)) * 30
    g = jax.random.normal(jax.random.key(8), v.shape)
    for size, k, alpha, beta in ((5, 2.0, 1e-3, 0.75), (4, 1.0, 1e-2, 0.5), (3, 1.5, 1e-2, 0.6)):  # sqrt paths, pow
        def formula(a):
            sq = jnp.pad(a * a, ((0, 0),) * 3 + ((size // 2, size - 1 - size // 2),))
            return a / (k + alpha * sum(sq[..., i:i + a.shape[-1]] for i in range(size))) ** beta
        y, pull = jax.vjp(lambda a: layers.lcn(a, size, k, alpha, beta), v)
        _close(y, formula(v), 1e-6)
        _close(pull(g)[0], jax.vjp(formula, v)[1](g)[0], 1e-5)
