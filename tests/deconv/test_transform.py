"""zfjax.deconv.transform.apply_rule / rule_sites on any JAX function: the forms of ReLU and pooling it finds, exact
forward
values, composition with jit/vmap/grad/sub-jaxprs, and bad input. Exactness against Captum: test_project_fn.py."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax

from zfjax import deconv
from zfjax.deconv import rules, transform
from zfjax.network import adapters, models

X = jax.random.normal(jax.random.key(0), (2, 10, 10, 3))
W = 0.5 * jax.random.normal(jax.random.key(1), (3, 3, 3, 4))


def _conv(x, w=W, stride=1):
    return lax.conv_general_dilated(x, w, (stride, stride), ((1, 1), (1, 1)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


RELU_FORMS = {
    "jax.nn.relu": jax.nn.relu,
    "flax.linen.relu": nn.relu,
    "max(x, 0)": lambda y: jnp.maximum(y, 0.0),
    "max(0, x)": lambda y: jnp.maximum(0.0, y),
    "max(x, zeros_like)": lambda y: jnp.maximum(y, jnp.zeros_like(y)),
    "max(x, broadcast 0)": lambda y: jnp.maximum(y, jnp.broadcast_to(jnp.float32(0), y.shape)),
    "where(x > 0, x, 0)": lambda y: jnp.where(y > 0, y, 0),
    "where(x >= 0, x, 0.)": lambda y: jnp.where(y >= 0, y, 0.0),
    "where(0 < x, x, 0)": lambda y: jnp.where(0 < y, y, 0),
    "where(x <= 0, 0, x)": lambda y: jnp.where(y <= 0, 0.0, y),
}
POOL_FORMS = {
    "flax max_pool": lambda y: nn.max_pool(y, (2, 2), (2, 2)),
    "reduce_window -inf": lambda y: lax.reduce_window(y, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                                      ((0, 0), (1, 1), (1, 1), (0, 0))),
    "reduce_window 0": lambda y: lax.reduce_window(y, 0.0, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"),
}


@pytest.mark.parametrize("form", RELU_FORMS)
def test_every_relu_form_is_found_and_gets_the_rule(form):
    relu = RELU_FORMS[form]
    fn = lambda x: relu(_conv(x))  # noqa: E731
    sites = transform.rule_sites(fn, X)
    assert [s.kind for s in sites] == ["relu"] and sites[0].shape == (2, 10, 10, 4), sites
    g = jax.random.normal(jax.random.key(2), (2, 10, 10, 4))
    pre, conv_pull = jax.vjp(_conv, X)
    for rule in rules.RULES:
        y, pull = jax.vjp(transform.apply_rule(fn, rule), X)
        np.testing.assert_array_equal(y, fn(X))  # the forward, bit for bit
        want = conv_pull(rules.backward(rule, pre > 0, g))[0]
        np.testing.assert_allclose(pull(g)[0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", POOL_FORMS)
def test_every_pool_form_unpools_to_the_first_maximum(form):
    pool = POOL_FORMS[form]
    fn = lambda x: pool(jax.nn.relu(x))  # noqa: E731
    assert [s.kind for s in transform.rule_sites(fn, X)] == ["relu", "pool"]
    # ties everywhere: half of the inputs are negative, so windows of zeros are common after the ReLU
    y, pull = jax.vjp(transform.apply_rule(fn, "saliency"), X)
    np.testing.assert_array_equal(y, fn(X))
    g = jax.random.uniform(jax.random.key(3), y.shape, minval=0.5, maxval=1.5)
    ours = np.asarray(pull(g)[0])
    xt = torch.tensor(np.asarray(X).transpose(0, 3, 1, 2), requires_grad=True)
    r = torch.relu(xt)
    if form == "flax max_pool":
        out = torch.nn.functional.max_pool2d(r, 2, 2)
    elif form == "reduce_window -inf":
        out = torch.nn.functional.max_pool2d(r, 3, 2, padding=1)
    else:  # init 0 on a non-negative input: the same as a plain pool
        out = torch.nn.functional.max_pool2d(r, 2, 2)
    out.backward(torch.tensor(np.asarray(g).transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(ours, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def test_jax_max_pool_gradient_ties_go_to_the_first_maximum():
    x = jnp.zeros((1, 3, 3, 1))  # one all-equal window
    for fn in (lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "VALID"),
               transform.apply_rule(lambda x: nn.max_pool(jax.nn.relu(x), (3, 3)), "deconvnet")):
        grad = np.asarray(jax.grad(lambda x: fn(x).sum())(x))[0, :, :, 0]
        want = np.zeros((3, 3))
        want[0, 0] = 1.0  # torch's max_pool2d: the first element in row-major order
        np.testing.assert_array_equal(grad, want)


def test_other_activations_are_named_in_one_warning_and_strict_raises():
    fn = lambda x: jax.nn.relu(jax.nn.gelu(x) + jax.nn.leaky_relu(x) + jnp.tanh(x) + jax.nn.silu(x)  # noqa: E731
                               + jnp.where(x > 0, x, 0.1 * x) + jax.nn.elu(x))
    kinds = [(s.kind, s.name) for s in transform.rule_sites(fn, X)]
    assert kinds.count(("relu", "jax.nn.relu")) == 1
    names = " ".join(name for kind, name in kinds if kind == "other")
    for expected in ("tanh", "leaky_relu", "silu", "elu", "leaky ReLU"):
        assert expected in names, (expected, names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = transform.apply_rule(fn)(X)
    assert len(caught) == 1 and "leaky_relu" in str(caught[0].message) and "silu" in str(caught[0].message)
    np.testing.assert_array_equal(y, fn(X))
    with pytest.raises(ValueError, match="other activation.*silu"):
        transform.apply_rule(fn, strict=True)(X)


def test_a_function_without_relu_is_an_error():
    with pytest.raises(ValueError, match="has no ReLU"):
        transform.apply_rule(lambda x: jnp.tanh(_conv(x)))(X)
    with pytest.raises(ValueError, match="unknown rule 'deconv'"):
        transform.apply_rule(jax.nn.relu, "deconv")


def test_sub_jaxprs_are_transformed():
    def body(c, x):
        return jax.nn.relu(c + x), c

    cases = {
        "cond": lambda x: lax.cond(x.sum() > -1e9, lambda y: jax.nn.relu(y) * 2, lambda y: y, x),
        "scan": lambda x: lax.scan(body, x[0], x)[0],
        "remat": lambda x: jax.checkpoint(lambda y: jnp.maximum(y, 0.0) * 3)(x),
        "custom_jvp": lambda x: _wrapped_jvp(x),
        "custom_vjp": lambda x: _wrapped_vjp(x),
        "jit": lambda x: jax.jit(lambda y: jnp.where(y > 0, y, 0))(x),
    }
    x = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    for name, fn in cases.items():
        sites = transform.rule_sites(fn, x)
        assert any(s.kind == "relu" for s in sites), name
        y, pull = jax.vjp(transform.apply_rule(fn, "deconvnet"), x)
        np.testing.assert_array_equal(y, fn(x), err_msg=name)
        g = -jnp.ones_like(y)  # a negative signal: the deconvnet's rectification stops it at every ReLU
        assert np.all(np.asarray(pull(g)[0]) == 0), name
        g = jnp.ones_like(y)
        plain = jax.vjp(transform.apply_rule(fn, "saliency"), x)[1](g)[0]
        assert np.all(np.asarray(pull(g)[0]) >= np.asarray(plain) - 1e-6), name  # rectified: never less
    loop = lambda x: lax.while_loop(lambda c: c[1] < 3, lambda c: (jax.nn.relu(c[0]) - 1, c[1] + 1), (x, 0))[0]  # noqa
    np.testing.assert_array_equal(transform.apply_rule(loop)(x), loop(x))  # forward through a while loop


@jax.custom_jvp
def _wrapped_jvp(x):
    return jax.nn.relu(x) + 1


_wrapped_jvp.defjvp(lambda primals, tangents: (_wrapped_jvp(primals[0]), tangents[0] * 0))


@jax.custom_vjp
def _wrapped_vjp(x):
    return jnp.maximum(x, 0.0) * 2


_wrapped_vjp.defvjp(lambda x: (_wrapped_vjp(x), None), lambda _, g: (g * 0,))


def test_parameters_stay_traced_and_grad_composes():
    def net(params, x):
        return jax.nn.relu(_conv(x, params["w"]) + params["b"]).sum()

    params = {"w": W, "b": jnp.zeros(4)}
    closed = jax.make_jaxpr(jax.jit(transform.apply_rule(net)))(params, X)
    assert not any(np.size(c) > 1 for c in closed.consts)  # no weights baked in as constants
    f = jax.jit(lambda p, x: jax.grad(transform.apply_rule(net, "saliency"))(p, x))
    np.testing.assert_allclose(f(params, X)["w"], jax.grad(net)(params, X)["w"], rtol=1e-6)
    other = {"w": -W, "b": jnp.ones(4)}  # new weights, same compiled function
    np.testing.assert_allclose(f(other, X)["w"], jax.grad(net)(other, X)["w"], rtol=1e-6)


def test_vmap_over_channels_equals_a_loop_and_builtin_nets_agree():
    arch = models.get("small", conv1={"features": 8}, conv2={"features": 8}, conv3={"features": 8},
                      conv4={"features": 8}, conv5={"features": 8})
    params = models.init(arch, jax.random.key(4))
    x = jax.random.normal(jax.random.key(5), (2, 28, 28, 1))
    for layer in ("pool1", "conv3"):
        fn = lambda x, layer=layer: models.apply(arch, params, x, upto=layer).acts[layer]  # noqa: E731
        many = jax.jit(jax.vmap(lambda c: deconv.project_fn(fn, x, c), out_axes=0))(jnp.arange(8))
        # the loop: one unbatched call per channel, each program compiled once (traced channel)
        one_fn = jax.jit(lambda x, c: deconv.project_fn(fn, x, c))
        builtin_fn = jax.jit(lambda x, c, layer=layer: deconv.project(arch, params, x, layer, c, lcn_rule="gradient"))
        for c in range(8):
            one = one_fn(x, jnp.int32(c))
            np.testing.assert_allclose(many[c], one, rtol=1e-5, atol=1e-7)
            builtin = builtin_fn(x, jnp.int32(c))
            np.testing.assert_allclose(one, builtin, rtol=1e-5, atol=1e-6 * float(np.abs(builtin).max()))
        res = deconv.project_many_fn(fn, x[0], [0, 5])
        np.testing.assert_allclose(res.projections[1], many[5, 0], rtol=1e-5, atol=1e-7)


def test_bad_input_names_the_problem():
    fn = lambda x: jax.nn.relu(_conv(x))  # noqa: E731
    with pytest.raises(ValueError, match=r"feature map, got shape \(2, 4\)"):
        deconv.project_fn(lambda x: jax.nn.relu(x.mean((1, 2)) @ jnp.ones((3, 4))), X, 0)
    with pytest.raises(ValueError, match="channel 4 is out of range: fn\\(x\\) has 4 channels"):
        deconv.project_fn(fn, X, 4)
    with pytest.raises(ValueError, match="outside the 10x10 map"):
        deconv.project_fn(fn, X, 0, (10, 0))
    with pytest.raises(ValueError, match="not floating point"):
        deconv.project_fn(fn, (X * 100).astype(jnp.uint8), 0)
    with pytest.raises(ValueError, match="has no ReLU"):
        deconv.project_fn(lambda x: _conv(x), X, 0)
    with pytest.raises(ValueError, match="channels .* out of range"):
        deconv.project_many_fn(fn, X[0], [9])

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.relu(nn.Conv(4, (3, 3), name="conv")(x))

    variables = Tiny().init(jax.random.key(0), X)
    assert adapters.points(Tiny(), variables, X) == {"conv": (2, 10, 10, 4)}
    with pytest.raises(ValueError, match="no point 'conv1'; its points: conv"):
        adapters.features(Tiny(), "conv1", variables, x=X)


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from zfjax import deconv
    assert jax.device_count() == 8
    w = 0.5 * jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    fn = lambda x: jax.nn.relu(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                            dimension_numbers=("NHWC", "HWIO", "NHWC")))
    x = jax.random.normal(jax.random.key(0), (8, 10, 10, 3))
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    f = jax.jit(lambda x: deconv.project_fn(fn, x, 2))
    out = f(xs)
    assert len(out.sharding.device_set) == 8, out.sharding
    np.testing.assert_allclose(out, f(x), rtol=1e-6, atol=1e-7)
    print("ok")
""")


@pytest.mark.slow
def test_projections_of_a_sharded_batch_equal_the_unsharded(subprocess_env, tmp_path):
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
