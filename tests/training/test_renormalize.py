"""Filter renormalization: filters above the radius are scaled to it, the others, biases and fc layers untouched."""
import jax
import jax.numpy as jnp
import numpy as np

from zfjax.network import models
from zfjax.training.renormalize import renormalize


def test_renormalize_caps_filter_rms():
    arch = models.get("small")
    params = models.init(arch, jax.random.key(0))
    w = np.asarray(params["conv1"]["w"]).copy()
    w[..., 0] *= 100.0  # one filter far above the radius
    w[..., 1] = 0.001 * np.sign(w[..., 1])  # one far below
    params = {**params, "conv1": {**params["conv1"], "w": jnp.asarray(w)}}
    out = renormalize(params, radius=0.1)
    rms = np.sqrt((np.asarray(out["conv1"]["w"]) ** 2).mean(axis=(0, 1, 2)))
    before = np.sqrt((w ** 2).mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(rms, np.minimum(before, 0.1), rtol=1e-5)
    np.testing.assert_array_equal(out["conv1"]["w"][..., 1], w[..., 1])
    np.testing.assert_array_equal(out["fc6"]["w"], params["fc6"]["w"])  # fc untouched
    np.testing.assert_array_equal(out["conv1"]["b"], params["conv1"]["b"])
