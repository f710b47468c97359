"""zfjax.deconv: projections agree with Captum (torch) and with the paper-style reference path; jit/vmap compose."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.common import torch_net
from zfjax import deconv
from zfjax.deconv import rules
from zfjax.network import layers, models

STATIC = ("arch", "layer", "rule", "lcn_rule")


@pytest.fixture(autouse=True, scope="module")
def float32_convolutions():
    """GPUs run float32 convolutions in TF32 by default (3e-4 relative error against Captum, seen on an H200);
    every comparison here is at float32 rounding, so ask for full precision (no effect on CPU)."""
    with jax.default_matmul_precision("highest"):
        yield
project_jit = jax.jit(deconv.project, static_argnames=STATIC)


def rel_err(a, b) -> float:
    """Max |a - b| relative to max |b| (the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def with_random_biases(params: models.Params, key, scale: float = 0.05) -> models.Params:
    """Non-zero biases: they shape the forward pass but must not enter the backward one."""
    keys = jax.random.split(key, len(params))
    return {n: {"w": p["w"], "b": scale * jax.random.normal(k, p["b"].shape)}
            for k, (n, p) in zip(keys, params.items())}


# ---------------------------------------------------------------------------------------------------------------
# Captum on an equivalent torch ZFNet at 224x224.

ZF_CHANNELS = 2  # per layer: the channel with the strongest unit and a middling active one


@pytest.fixture(scope="module")
def zf():
    arch = models.get("zfnet", init="fan_in")
    params = with_random_biases(models.init(arch, jax.random.key(0)), jax.random.key(1))
    image = jax.random.uniform(jax.random.key(2), (1, 224, 224, 3), minval=-1.0, maxval=1.0)
    return arch, params, image


CAPTUM = {"deconvnet": "NeuronDeconvolution", "guided": "NeuronGuidedBackprop", "saliency": "NeuronGradient"}
# (LCN in the net, lcn_rule): LCN's true gradient, LCN skipped on the way back (torch: identity-backward LRN), no LCN.
LCN_CASES = [(True, "gradient"), (True, "identity"), (False, "identity")]


def project_channels(arch, params, image, layer, channels, lcn_rule):
    """{rule: each channel's strongest unit projected}, vmapped over channels.

    Run eagerly: at 224x224 the per-primitive compilations are shared by all layers and rules, which costs less
    than compiling 15 whole graphs (jit == no jit is tested on a small net below)."""
    return {rule: jax.vmap(lambda ch: deconv.project(arch, params, image, layer, ch, rule=rule, lcn_rule=lcn_rule))(
        channels)[:, 0] for rule in deconv.RULES}


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3", "conv4", "conv5"])
def test_matches_captum_zfnet_224(zf, layer):
    """All three rules, with LCN's gradient, with LCN skipped on the way back, and without LCN: rel. error <= 1e-4."""
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    arch, params, image = zf
    x_torch = torch.from_numpy(np.asarray(image).transpose(0, 3, 1, 2).copy())
    for lcn_on, lcn_rule in LCN_CASES:
        net_arch = models.get("zfnet", init="fan_in", lcn=lcn_on)
        net = torch_net(net_arch, params, upto=layer, lcn_backward=lcn_rule)
        unit_layer = list(net.children())[-1]
        with torch.no_grad():
            acts = net(x_torch)[0]  # (C, H, W)
        peaks = acts.flatten(1).max(1)
        order = np.argsort(-peaks.values.numpy())[: int((peaks.values > 0).sum())]
        channels = torch.tensor([order[0], order[len(order) // 2]])  # the strongest channel and a middling one
        flat = peaks.indices[channels]
        rows, cols = flat // acts.shape[2], flat % acts.shape[2]
        values = acts[channels, rows, cols].numpy()
        ours = project_channels(net_arch, params, image, layer, jnp.asarray(channels.numpy()), lcn_rule)
        batch = x_torch.expand(len(channels), -1, -1, -1).clone().requires_grad_(True)
        for rule, method in CAPTUM.items():
            # Captum seeds each neuron with 1: one neuron per copy of the image, then scale by its value.
            ref = getattr(captum_attr, method)(net, unit_layer).attribute(
                batch, neuron_selector=lambda out: out[torch.arange(len(channels)), channels, rows, cols])
            ref = ref.detach().numpy().transpose(0, 2, 3, 1) * values[:, None, None, None]
            for ch, got, want in zip(channels.tolist(), np.asarray(ours[rule]), ref):
                err = rel_err(got, want)
                assert err <= 1e-4, (layer, lcn_on, lcn_rule, rule, ch, err)


# ---------------------------------------------------------------------------------------------------------------
# Small nets: the VJP path against the paper-style reference path, and composition with jit / vmap.

@pytest.fixture(scope="module")
def small():
    arch = models.get("small")
    params = with_random_biases(models.init(arch, jax.random.key(3)), jax.random.key(4))
    x = jax.random.uniform(jax.random.key(5), (2, 28, 28, 1))
    return arch, params, x


def _reference_cases(name, **overrides):
    arch = models.get(name, init="fan_in", **overrides)
    params = with_random_biases(models.init(arch, jax.random.key(6)), jax.random.key(7))
    x = jax.random.uniform(jax.random.key(8), (2, *arch.input_shape), minval=-1.0, maxval=1.0)
    return arch, params, x


# Compiled whole: one program per (layer, rule, lcn_rule) instead of each operation's own (`test_jit_matches_eager`
# checks that both agree).
_reference = jax.jit(deconv.project_reference, static_argnames=("arch", "layer", "rule", "lcn_rule"))
_project = jax.jit(deconv.project, static_argnames=("arch", "layer", "rule", "lcn_rule", "crop"))


@pytest.mark.parametrize("name, overrides, rules", [
    ("small", {}, deconv.RULES),
    # strided convs (7x7/2 pad 1, 5x5/2), odd size 67: ceil-mode pools with partial last windows
    ("zfnet", {"input_shape": (67, 67, 3), "num_classes": 10}, deconv.RULES),
    ("alexnet", {"input_shape": (67, 67, 3), "num_classes": 10}, ("deconvnet",)),
])
def test_reference_path_matches_vjp_path(name, overrides, rules):
    """Every projectable layer; the (rule, lcn_rule, position) combinations are dealt round-robin over the layers."""
    arch, params, x = _reference_cases(name, **overrides)
    fwd = models.apply(arch, params, x, upto=deconv.projectable_layers(arch)[-1])
    combos = list(itertools.product(rules, deconv.LCN_RULES, (False, True)))
    for i, layer in enumerate(deconv.projectable_layers(arch)):
        act = fwd.acts[layer]
        channel = int(jnp.argmax(act.max(axis=(0, 1, 2))))  # an active channel
        for rule, lcn_rule, fixed in (combos[(2 * i) % len(combos)], combos[(2 * i + 1) % len(combos)]):
            position = np.array([[0, 0], [act.shape[1] - 1, act.shape[2] // 2]]) if fixed else None
            kw = dict(position=position, rule=rule, lcn_rule=lcn_rule)
            ref = _reference(arch, params, x, layer, channel, **kw)
            got = _project(arch, params, x, layer, channel, **kw)
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


def test_vmap_over_channels_matches_loop_and_shares_the_forward(small):
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


def test_jit_matches_eager(small):
    arch, params, x = small
    for layer, rule, lcn_rule in [("pool2", "deconvnet", "gradient"), ("conv3", "guided", "identity")]:
        kw = dict(rule=rule, lcn_rule=lcn_rule)
        np.testing.assert_allclose(project_jit(arch, params, x, layer, jnp.int32(7), **kw),
                                   deconv.project(arch, params, x, layer, 7, **kw), rtol=0, atol=1e-6)


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
