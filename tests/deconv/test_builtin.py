"""zfjax.deconv.builtin: projections agree with the paper-style reference path; jit/vmap compose; bad input.
(Against Captum at full size: test_builtin_captum.py.)"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zfjax import deconv
from zfjax.deconv import rules
from zfjax.network import layers, models

# ---------------------------------------------------------------------------------------------------------------
# Small nets: the VJP path against the paper-style reference path, and composition with jit / vmap.

@pytest.fixture(scope="module")
def small(random_biases):
    arch = models.get("small")
    params = random_biases(models.init(arch, jax.random.key(3)), jax.random.key(4))
    x = jax.random.uniform(jax.random.key(5), (2, 28, 28, 1))
    return arch, params, x


def _reference_cases(random_biases, name, **overrides):
    arch = models.get(name, init="fan_in", **overrides)
    params = random_biases(models.init(arch, jax.random.key(6)), jax.random.key(7))
    x = jax.random.uniform(jax.random.key(8), (2, *arch.input_shape), minval=-1.0, maxval=1.0)
    return arch, params, x


# Compiled whole: one program per (layer, rule, lcn_rule) instead of each operation's own (`test_jit_matches_eager`
# checks that both agree).
_reference = jax.jit(deconv.project_reference, static_argnames=("arch", "layer", "rule", "lcn_rule"))


@pytest.mark.parametrize("name, overrides, rules", [
    ("small", {}, deconv.RULES),
    # strided convs (7x7/2 pad 1, 5x5/2), odd size 67: ceil-mode pools with partial last windows
    ("zfnet", {"input_shape": (67, 67, 3), "num_classes": 10}, deconv.RULES),
    ("alexnet", {"input_shape": (67, 67, 3), "num_classes": 10}, ("deconvnet",)),
])
def test_reference_path_matches_vjp_path(random_biases, project_jit, name, overrides, rules):
    """Every projectable layer; the (rule, lcn_rule, position) combinations are dealt round-robin over the layers."""
    arch, params, x = _reference_cases(random_biases, name, **overrides)
    fwd = models.apply(arch, params, x, upto=deconv.projectable_layers(arch)[-1])
    combos = list(itertools.product(rules, deconv.LCN_RULES, (False, True)))
    for i, layer in enumerate(deconv.projectable_layers(arch)):
        act = fwd.acts[layer]
        channel = int(jnp.argmax(act.max(axis=(0, 1, 2))))  # an active channel
        for rule, lcn_rule, fixed in (combos[(2 * i) % len(combos)], combos[(2 * i + 1) % len(combos)]):
            position = np.array([[0, 0], [act.shape[1] - 1, act.shape[2] // 2]]) if fixed else None
            kw = dict(position=position, rule=rule, lcn_rule=lcn_rule)
            ref = _reference(arch, params, x, layer, channel, **kw)
            got = project_jit(arch, params, x, layer, channel, **kw)
            assert got.shape == x.shape
            if not fixed:
                assert float(jnp.abs(ref).max()) > 0
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(jnp.abs(ref).max()) + 1e-30,
                                       err_msg=f"{name} {layer} {rule} {lcn_rule} {position}")


def _conv_batch_sizes(fn, *args) -> list[int]:
    """Leading (batch) size of the input of every convolution in the compiled program of fn(*args)."""
    import re
    hlo = jax.jit(fn).lower(*args).as_text()
    return [int(m) for m in re.findall(r"stablehlo\.convolution\(.*?\).*?:\s*\(tensor<(\d+)x", hlo)]


def test_vmap_over_channels_matches_loop_and_shares_the_forward(small, project_jit):
    arch, params, x = small
    channels = jnp.arange(6)
    many = lambda p, x, chs: jax.vmap(lambda c: deconv.project(arch, p, x, "conv4", c))(chs)
    got = jax.jit(many)(params, x, channels)
    for c in range(6):
        np.testing.assert_allclose(got[c], project_jit(arch, params, x, "conv4", c), rtol=0, atol=1e-6)
    # The forward convs (conv1..conv4) run once on the N images; only the backward ones are batched over channels.
    sizes = _conv_batch_sizes(many, params, x, channels)
    assert sorted(sizes) == [2] * 4 + [12] * 4, sizes


def test_vmap_over_positions_and_per_image_positions(small):
    arch, params, x = small
    positions = jnp.array([[1, 2], [3, 0], [6, 6]])
    got = jax.jit(jax.vmap(lambda pos: deconv.project(arch, params, x[:1], "conv5", 5, position=pos)))(positions)
    for i, pos in enumerate(np.asarray(positions)):
        np.testing.assert_allclose(got[i], deconv.project(arch, params, x[:1], "conv5", 5, position=tuple(pos)),
                                   rtol=0, atol=1e-6)
    per_image = deconv.project(arch, params, x, "conv5", 5, position=positions[:2])
    for i in range(2):
        alone = deconv.project(arch, params, x[i:i + 1], "conv5", 5, position=tuple(np.asarray(positions[i])))
        np.testing.assert_allclose(per_image[i:i + 1], alone, rtol=0, atol=1e-6)


def test_jit_matches_eager(small, project_jit):
    arch, params, x = small
    for layer, rule, lcn_rule in [("pool2", "deconvnet", "gradient"), ("conv3", "guided", "identity")]:
        kw = dict(rule=rule, lcn_rule=lcn_rule)
        np.testing.assert_allclose(project_jit(arch, params, x, layer, jnp.int32(7), **kw),
                                   deconv.project(arch, params, x, layer, 7, **kw), rtol=0, atol=1e-6)


def test_an_image_closed_over_by_the_users_jit_projects(small):
    """The documented `jit(vmap(lambda c: project(arch, params, x, layer, c)))` with a concrete `x` in the closure
    (the input check runs on it at trace time) equals the projections of `x` passed as an argument."""
    arch, params, x = small
    closed = jax.jit(jax.vmap(lambda c: deconv.project(arch, params, x, "conv2", c)))(jnp.arange(3))
    passed = jax.jit(jax.vmap(lambda x, c: deconv.project(arch, params, x, "conv2", c), in_axes=(None, 0)))(
        x, jnp.arange(3))
    np.testing.assert_allclose(closed, passed, rtol=0, atol=1e-6)


def test_project_many_matches_project(small):
    arch, params, x = small
    image = x[1]
    res = deconv.project_many(arch, params, image, "conv2", chunk=24)  # 64 channels: chunks of 24, 24, 16
    acts = models.apply(arch, params, image[None], upto="conv2").acts["conv2"][0]
    assert res.projections.shape == (64, 28, 28, 1)
    np.testing.assert_allclose(res.values, acts.max(axis=(0, 1)), rtol=1e-6)
    flat = np.asarray(acts.reshape(-1, 64).argmax(axis=0))
    np.testing.assert_array_equal(res.positions, np.stack([flat // 14, flat % 14], axis=1))
    loop = jax.jit(jax.vmap(lambda c: deconv.project(arch, params, image[None], "conv2", c)[0]))(jnp.arange(64))
    np.testing.assert_allclose(res.projections, loop, rtol=0, atol=1e-6)
    chosen = deconv.project_many(arch, params, image, "conv2", [5, 1, 7], rule="guided", lcn_rule="gradient")
    for i, c in enumerate([5, 1, 7]):
        want = deconv.project(arch, params, image[None], "conv2", c, rule="guided", lcn_rule="gradient")[0]
        np.testing.assert_allclose(chosen.projections[i], want, rtol=0, atol=1e-6)


def test_pool_unit_projects_like_its_switch_location(small):
    """A pool unit is its conv unit at the switch; through LCN (identity rule) only its value changes."""
    arch, params, x = small
    fwd = models.apply(arch, params, x[:1], upto="pool5")
    for pool, conv in [("pool5", "conv5"), ("pool1", "conv1")]:
        channel = int(jnp.argmax(fwd.acts[pool][0].max(axis=(0, 1))))
        row, col = 1, 2
        flat = int(fwd.switches[pool][0, row, col, channel])
        width = fwd.acts[conv].shape[2]
        from_pool = deconv.project(arch, params, x[:1], pool, channel, position=(row, col))
        from_conv = deconv.project(arch, params, x[:1], conv, channel, position=(flat // width, flat % width))
        scale = fwd.acts[pool][0, row, col, channel] / fwd.acts[conv][0, flat // width, flat % width, channel]
        assert float(jnp.abs(from_conv).max()) > 0
        np.testing.assert_allclose(from_pool, scale * from_conv, rtol=0, atol=1e-6 * float(jnp.abs(from_pool).max()))


def test_unit_with_zero_activation_projects_to_zeros(small):
    arch, params, x = small
    dead = {**params, "conv3": {"w": params["conv3"]["w"], "b": params["conv3"]["b"].at[4].set(-1e3)}}
    for rule in deconv.RULES:
        for lcn_rule in deconv.LCN_RULES:
            p = deconv.project(arch, dead, x, "conv3", 4, rule=rule, lcn_rule=lcn_rule)
            assert np.all(np.asarray(p) == 0), (rule, lcn_rule)
    res = deconv.project_many(arch, dead, x[0], "conv3", [4, 0])
    assert float(res.values[0]) == 0 and np.all(np.asarray(res.projections[0]) == 0)
    assert np.all(np.isfinite(np.asarray(res.projections)))


def test_backward_rules_of_relu_and_lcn():
    x = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    g = jnp.array([1.0, -1.0, 3.0, -3.0, 2.0])
    for fn, want in [(rules.RELUS["deconvnet"], [1.0, 0.0, 3.0, 0.0, 2.0]),  # max(g, 0), whatever the sign of x
                     (rules.RELUS["guided"], [0.0, 0.0, 0.0, 0.0, 2.0]),  # max(g, 0) where x > 0
                     (rules.RELUS["saliency"], [0.0, 0.0, 0.0, -3.0, 2.0]),  # the gradient
                     (jax.nn.relu, [0.0, 0.0, 0.0, -3.0, 2.0])]:
        y, pullback = jax.vjp(fn, x)
        np.testing.assert_array_equal(y, jax.nn.relu(x))
        np.testing.assert_array_equal(pullback(g)[0], want)
    v = jax.random.normal(jax.random.key(9), (2, 3, 3, 7)) * 30
    gv = jax.random.normal(jax.random.key(10), v.shape)
    y, pullback = jax.vjp(lambda a: deconv.lcn_skipped_backward(a, 5, 2.0, 1e-4, 0.75), v)
    np.testing.assert_array_equal(y, layers.lcn(v))
    np.testing.assert_array_equal(pullback(gv)[0], gv)
    for size in (5, 4):  # the hand-written LCN gradient of the reference path, odd and even windows
        hp = (size, 2.0, 1e-3, 0.75)
        want = jax.vjp(lambda a: layers.lcn(a, *hp), v)[1](gv)[0]
        np.testing.assert_allclose(deconv.lcn_gradient(gv, v, *hp), want, rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise_clear_errors(small):
    arch, params, x = small
    cases = [
        (dict(layer="conv9"), "cannot project from layer 'conv9'"),
        (dict(layer="fc6"), "cannot project from layer 'fc6'"),
        (dict(channel=64), "channel 64 is out of range: conv5 has 64 channels"),
        (dict(channel=-1), "out of range"),
        (dict(position=(7, 0)), r"outside the 7x7 map of conv5"),
        (dict(position=np.zeros((3, 2), int)), r"\(N, 2\)"),
        (dict(rule="deconv"), "unknown rule 'deconv'"),
        (dict(lcn_rule="none"), "unknown lcn_rule 'none'"),
    ]
    for change, message in cases:
        kw = {**dict(layer="conv5", channel=0, position=None, rule="deconvnet", lcn_rule="identity"), **change}
        layer, channel = kw.pop("layer"), kw.pop("channel")
        for fn in (deconv.project, deconv.project_reference):
            with pytest.raises(ValueError, match=message):
                fn(arch, params, x, layer, channel, **kw)
    with pytest.raises(ValueError, match="out of range: conv2 has 64"):
        deconv.project_many(arch, params, x[0], "conv2", [0, 64])
    with pytest.raises(ValueError, match="one image"):
        deconv.project_many(arch, params, x, "conv2")
    with pytest.raises(ValueError, match="unknown rule"):
        deconv.project_many(arch, params, x[0], "conv2", rule="Guided")


def test_normalize_projection_for_display():
    from zfjax.pictures import plots
    p = np.stack([np.linspace(-2.0, 1.0, 12).reshape(2, 2, 3), np.zeros((2, 2, 3)), np.full((2, 2, 3), 0.25)])
    out = plots.normalize_projection(p)
    assert out.shape == p.shape and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out[0], 0.5 + p[0] / 4)  # per projection: the largest |value| (2) goes to 0
    np.testing.assert_array_equal(out[1], 0.5)  # a unit that did not fire: uniform grey
    np.testing.assert_array_equal(out[2], 1.0)
    with pytest.raises(ValueError, match="H, W, C"):
        plots.normalize_projection(np.zeros((4, 4)))
