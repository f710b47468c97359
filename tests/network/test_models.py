"""The networks: shapes, counts, a forward pass equal to torch's, switches, dropout, renormalization, bad input."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zfjax.network import layers, models

torch = pytest.importorskip("torch")
F = torch.nn.functional

apply_jit = jax.jit(models.apply, static_argnums=0, static_argnames=("train", "upto"))


# ---------------------------------------------------------------- shapes and counts (full size, no compute)

ZF_SHAPES = {"conv1": (110, 110, 96), "pool1": (55, 55, 96), "conv2": (26, 26, 256), "pool2": (13, 13, 256),
             "conv3": (13, 13, 384), "conv4": (13, 13, 384), "conv5": (13, 13, 256), "pool5": (6, 6, 256),
             "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}


def test_zfnet_shapes_at_224_by_eval_shape():
    arch = models.get("zfnet")
    params = jax.eval_shape(lambda: models.init(arch, jax.random.key(0)))
    assert params["conv1"]["w"].shape == (7, 7, 3, 96) and params["fc6"]["w"].shape == (6 * 6 * 256, 4096)
    out = jax.eval_shape(lambda p, x: models.apply(arch, p, x), params, jax.ShapeDtypeStruct((2, 224, 224, 3),
                                                                                           jnp.float32))
    assert {k: v.shape[1:] for k, v in out.acts.items()} == ZF_SHAPES
    assert out.logits.shape == (2, 1000)
    assert {k: (v.shape[1:], v.dtype) for k, v in out.switches.items()} == {
        "pool1": ((55, 55, 96), jnp.int32), "pool2": ((13, 13, 256), jnp.int32), "pool5": ((6, 6, 256), jnp.int32)}
    assert arch.shapes() == ZF_SHAPES


def _count_by_table(convs, fcs):
    """Parameters from a (kernel, c_in, c_out) table and fc (in, out) pairs, as the paper's Fig. 3 lists them."""
    return sum(k * k * ci * co + co for k, ci, co in convs) + sum(i * o + o for i, o in fcs)


@pytest.mark.parametrize("name,convs,fcs", [
    ("zfnet", [(7, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 384), (3, 384, 256)],
     [(9216, 4096), (4096, 4096), (4096, 1000)]),
    ("zfnet_b", [(7, 3, 96), (5, 96, 256), (3, 256, 512), (3, 512, 1024), (3, 1024, 512)],
     [(6 * 6 * 512, 4096), (4096, 4096), (4096, 1000)]),
    ("alexnet", [(11, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 384), (3, 384, 256)],
     [(9216, 4096), (4096, 4096), (4096, 1000)]),
    ("alexnet_torchvision", [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256), (3, 256, 256)],
     [(9216, 4096), (4096, 4096), (4096, 1000)]),
])
def test_param_counts(name, convs, fcs):
    arch = models.get(name)
    assert models.count_params(arch) == _count_by_table(convs, fcs)
    params = jax.eval_shape(lambda: models.init(arch, jax.random.key(0)))
    assert models.count_params(params) == models.count_params(arch)


def test_zfnet_paper_numbers():
    arch = models.get("zfnet")
    assert models.count_params(arch) == 62_357_608
    assert sum(models.macs(arch).values()) == 1_168_032_896
    assert models.macs(arch)["conv1"] == 110 * 110 * 7 * 7 * 3 * 96


def test_alexnet_sizes():
    shapes = models.get("alexnet").shapes()
    assert shapes["conv1"] == (55, 55, 96) and shapes["pool1"] == (27, 27, 96) and shapes["pool5"] == (6, 6, 256)
    tv = models.get("alexnet_torchvision").shapes()  # floor-mode pools as torchvision's
    assert tv["pool1"] == (27, 27, 64) and tv["pool2"] == (13, 13, 192) and tv["pool5"] == (6, 6, 256)


# ---------------------------------------------------------------- overrides

def test_ablation_overrides():
    arch = models.get("zfnet", remove=("conv3", "conv4", "fc6", "fc7"), num_classes=10)
    assert arch.layer_names == ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5", "fc8")
    p = models.param_shapes(arch)
    assert p["conv5"]["w"] == (3, 3, 256, 256) and p["fc8"]["w"] == (6 * 6 * 256, 10)
    wide = models.get("zfnet", conv3={"features": 512}, conv4={"features": 1024}, conv5={"features": 512})
    assert models.count_params(wide) == models.count_params(models.get("zfnet_b"))
    big_fc = models.get("zfnet", fc6={"features": 8192}, fc7={"features": 8192})
    assert models.param_shapes(big_fc)["fc7"]["w"] == (8192, 8192)
    first = models.get("zfnet", conv1={"kernel": 11, "stride": 4, "padding": 2})
    assert first.shapes()["conv1"] == (55, 55, 96)
    assert not models.get("zfnet", lcn=False).lcn
    assert hash(arch) == hash(models.get("zfnet", remove=("conv3", "conv4", "fc6", "fc7"), num_classes=10))


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "vgg"}, "unknown architecture 'vgg'"),
    ({"colour": 1}, "unknown override 'colour'"),
    ({"conv3": {"width": 2}}, r"unknown field\(s\) \['width'\] for layer conv3"),
    ({"remove": ("conv9",)}, "cannot remove 'conv9'"),
    ({"input_shape": (20, 20, 3)}, "too small"),
    ({"init": "xavier"}, "unknown init 'xavier'"),
])
def test_get_rejects_bad_overrides(kwargs, match):
    kwargs = dict(kwargs)
    name = kwargs.pop("name", "zfnet")
    with pytest.raises(ValueError, match=match):
        models.get(name, **kwargs)


# ---------------------------------------------------------------- forward == torch

class TorchNet:
    """The same network written independently with torch.nn.functional, NCHW, on copied weights."""

    def __init__(self, arch, params):
        self.arch = arch
        self.p = {k: {n: torch.tensor(np.asarray(v)) for n, v in d.items()} for k, d in params.items()}

    def __call__(self, x_nhwc):
        a, acts, idx = self.arch, {}, {}
        x = torch.tensor(np.asarray(x_nhwc)).permute(0, 3, 1, 2)
        for c in a.convs:
            w = self.p[c.name]["w"].permute(3, 2, 0, 1)
            x = F.relu(F.conv2d(x, w, self.p[c.name]["b"], stride=c.stride, padding=c.padding))
            acts[c.name] = x
            if c.pool:
                x, idx[c.pool_name] = F.max_pool2d(x, a.pool_window, a.pool_stride, ceil_mode=a.pool_ceil,
                                                   return_indices=True)
                if c.lcn and a.lcn:
                    x = F.local_response_norm(x, a.lcn_size, alpha=a.lcn_alpha * a.lcn_size, beta=a.lcn_beta,
                                              k=a.lcn_k)
                acts[c.pool_name] = x
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # NHWC flatten, as zfjax
        for f in a.fcs:
            x = F.relu(x @ self.p[f.name]["w"] + self.p[f.name]["b"])
            acts[f.name] = x
        acts["fc8"] = x @ self.p["fc8"]["w"] + self.p["fc8"]["b"]
        to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy() if t.ndim == 4 else t.numpy()  # noqa: E731
        return {k: to_nhwc(v) for k, v in acts.items()}, {k: to_nhwc(v) for k, v in idx.items()}


SMALL_ARCHS = [
    models.get("zfnet", input_shape=(64, 64, 3), num_classes=7, init="fan_in"),
    models.get("alexnet", input_shape=(71, 71, 3), num_classes=5, init="fan_in"),
    models.get("alexnet_torchvision", input_shape=(67, 67, 3), num_classes=4, init="fan_in"),
    models.get("small"),
]


@pytest.mark.parametrize("arch", SMALL_ARCHS, ids=lambda a: a.name)
def test_forward_matches_torch(arch):
    params = models.init(arch, jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (2,) + arch.input_shape) * 50.0
    out = apply_jit(arch, params, x)
    ref_acts, ref_idx = TorchNet(arch, params)(x)
    assert set(out.acts) == set(ref_acts) == set(arch.layer_names)
    for name, ref in ref_acts.items():
        got = np.asarray(out.acts[name])
        scale = max(np.abs(ref).max(), 1e-6)
        assert got.shape == ref.shape, name
        assert np.abs(got - ref).max() / scale < 1e-5, name
        assert np.abs(ref).max() > 0, f"{name} is dead: the test would not see errors"
    for name, ref in ref_idx.items():  # torch's indices use the same flat h * W + w format, first maximum on ties
        np.testing.assert_array_equal(np.asarray(out.switches[name]), ref, err_msg=name)
    np.testing.assert_allclose(np.asarray(out.logits), ref_acts["fc8"], rtol=1e-4, atol=1e-4 * np.abs(
        ref_acts["fc8"]).max())


def test_switches_reproduce_pooled_values():
    arch = models.get("zfnet", input_shape=(64, 64, 3), num_classes=3, lcn=False, init="fan_in")
    params = models.init(arch, jax.random.key(3))
    out = apply_jit(arch, params, jax.random.normal(jax.random.key(4), (2,) + arch.input_shape))
    for conv in ("conv1", "conv2", "conv5"):
        pool = "pool" + conv[-1]
        pre = np.asarray(out.acts[conv])
        n, h, w, c = pre.shape
        sw = np.asarray(out.switches[pool])
        rows, cols = (np.asarray(a) for a in models.unravel_switches(sw, w))
        gathered = np.take_along_axis(pre.reshape(n, h * w, c), sw.reshape(n, -1, c), axis=1).reshape(sw.shape)
        np.testing.assert_array_equal(gathered, np.asarray(out.acts[pool]))
        # each switch lies inside its own 3x3 window
        oy = np.arange(sw.shape[1])[None, :, None, None] * 2
        ox = np.arange(sw.shape[2])[None, None, :, None] * 2
        assert ((rows - oy >= 0) & (rows - oy < 3) & (cols - ox >= 0) & (cols - ox < 3)).all()


def test_max_pool_vjp_is_the_gradient():
    """The switch unpooling equals autodiff of XLA's own max pool (random input: no ties)."""
    x = jax.random.normal(jax.random.key(5), (2, 11, 12, 3))
    g = jax.random.normal(jax.random.key(6), (2, 5, 6, 3))  # ceil mode: 11 -> 5, 12 -> 6
    y, vjp = jax.vjp(lambda v: layers.max_pool(v, 3, 2, True)[0], x)
    ref_y, ref_vjp = jax.vjp(lambda v: jax.lax.reduce_window(
        jnp.pad(v, ((0, 0), (0, 0), (0, 1), (0, 0)), constant_values=-jnp.inf), -jnp.inf, jax.lax.max,
        (1, 3, 3, 1), (1, 2, 2, 1), "VALID"), x)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_allclose(vjp(g)[0], ref_vjp(g)[0], rtol=0, atol=1e-6)


def test_pool_output_size_matches_torch():
    for n in range(3, 40):
        for ceil in (True, False):
            t = F.max_pool2d(torch.zeros(1, 1, n, n), 3, 2, ceil_mode=ceil).shape[-1]
            assert layers.pool_output_size(n, 3, 2, ceil) == t, (n, ceil)


# ---------------------------------------------------------------- train mode, upto, jit

def test_dropout_only_in_train_mode():
    arch = models.get("small")
    params = models.init(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4,) + arch.input_shape)
    ev = apply_jit(arch, params, x)
    np.testing.assert_array_equal(ev.logits, apply_jit(arch, params, x, train=False, rng=jax.random.key(9)).logits)
    t1 = apply_jit(arch, params, x, train=True, rng=jax.random.key(1))
    t2 = apply_jit(arch, params, x, train=True, rng=jax.random.key(2))
    assert not np.allclose(t1.logits, ev.logits) and not np.allclose(t1.logits, t2.logits)
    np.testing.assert_array_equal(t1.acts["fc6"], ev.acts["fc6"])  # reported pre-dropout
    with pytest.raises(ValueError, match="needs rng"):
        models.apply(arch, params, x, train=True)


def test_dropout_mask_statistics():
    x = jnp.ones((200, 500))
    y = np.asarray(layers.dropout(x, 0.5, jax.random.key(0)))
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.01


def test_upto_stops_early_and_jit_equals_eager():
    arch = models.get("zfnet", input_shape=(64, 64, 3), num_classes=3, init="fan_in")
    params = models.init(arch, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (1,) + arch.input_shape)
    out = models.apply(arch, params, x, upto="conv3")
    assert out.logits is None and list(out.acts) == ["conv1", "pool1", "conv2", "pool2", "conv3"]
    assert set(out.switches) == {"pool1", "pool2"}
    full = apply_jit(arch, params, x)
    np.testing.assert_allclose(out.acts["conv3"], full.acts["conv3"], rtol=1e-5, atol=1e-6)
    # conv layers accept other image sizes when the fc layers are not reached
    big = models.apply(arch, params, jnp.zeros((1, 80, 120, 3)), upto="pool5")
    assert big.acts["pool5"].shape[1:3] == (2, 3)  # 80x120 -> conv1 38x58 -> 19x29 -> 8x13 -> 4x6 -> 2x3


# ---------------------------------------------------------------- init

def test_init_schemes():
    arch = models.get("zfnet", input_shape=(64, 64, 3), num_classes=10)
    p = models.init(arch, jax.random.key(0))
    assert abs(float(jnp.std(p["conv2"]["w"])) - 0.01) < 0.0005 and not jnp.any(p["conv2"]["b"])
    q = models.init(models.get("zfnet", input_shape=(64, 64, 3), num_classes=10, init="fan_in"), jax.random.key(0))
    assert abs(float(jnp.std(q["conv2"]["w"])) - math.sqrt(2 / (5 * 5 * 96))) < 0.002
    models.check_params(arch, p)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("shape,dtype,upto,match", [
    ((28, 28, 1), jnp.float32, None, "rank 4"),
    ((1, 28, 28, 3), jnp.float32, None, "has 3 channels, small expects 1"),
    ((1, 32, 32, 1), jnp.float32, None, "fc layers of small need 28x28"),
    ((1, 28, 28, 1), jnp.uint8, None, "not floating point"),
    ((1, 28, 28, 1), jnp.float32, "conv7", "unknown layer upto='conv7'"),
])
def test_apply_rejects_bad_input(shape, dtype, upto, match):
    arch = models.get("small")
    params = jax.eval_shape(lambda: models.init(arch, jax.random.key(0)))
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda p: models.apply(arch, p, jnp.zeros(shape, dtype), upto=upto), params)


def test_check_params_names_the_layer():
    arch = models.get("small")
    params = models.init(models.get("small", conv3={"features": 48}), jax.random.key(0))
    with pytest.raises(ValueError, match=r"params\['conv3'\]\['w'\] has shape \(3, 3, 64, 48\)"):
        models.check_params(arch, params)
