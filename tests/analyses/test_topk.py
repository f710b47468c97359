"""Streaming top-k scan against a brute-force sort of all activations materialized at once."""
import jax
import numpy as np
import pytest

from zfjax.analyses import topk
from zfjax.network import models

N_IMAGES, BATCH = 45, 8  # 6 batches, the last one of 5


@pytest.fixture(scope="module")
def net():
    arch = models.get("small")
    params = jax.jit(models.init, static_argnums=0)(arch, jax.random.key(0))
    # conv5 channel 0 is dead: every image ties at value 0, position (0, 0).
    params["conv5"] = {**params["conv5"], "b": params["conv5"]["b"].at[0].set(-1e4)}
    images = np.array(jax.random.normal(jax.random.key(1), (N_IMAGES, *arch.input_shape)), np.float32)
    images[30], images[41] = images[3], images[17]  # exact ties across batches
    indices = np.random.default_rng(0).permutation(N_IMAGES) * 3 + 2  # global indices, not in stream order
    return arch, params, images, indices


_forward = jax.jit(models.apply, static_argnames=("arch", "upto"))


def _brute_force(acts: np.ndarray, indices: np.ndarray, k: int) -> topk.TopK:
    """Every (image, channel) maximum sorted per channel: value descending, then image index ascending."""
    n, h, w, c = acts.shape
    flat = acts.reshape(n, h * w, c)
    best, pos = flat.max(axis=1), flat.argmax(axis=1)
    cols = [np.lexsort((indices, -best[:, ch]))[:k] for ch in range(c)]
    take = lambda a: np.stack([a[order, ch] for ch, order in enumerate(cols)])  # noqa: E731
    image = np.stack([indices[order] for order in cols])
    return topk.TopK(take(best), image, take(pos) // w, take(pos) % w)


def _stream(images, indices, batch):
    return [(images[i:i + batch], indices[i:i + batch]) for i in range(0, len(images), batch)]


def _assert_equal(got: topk.TopK, want: topk.TopK):
    """Same images and positions in the same order; values equal up to float rounding of other batch sizes."""
    np.testing.assert_allclose(got.values, want.values, rtol=1e-5, atol=1e-6)
    for name in ("image", "h", "w"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


@pytest.mark.parametrize("layer", ["conv5", "pool1"])
def test_scan_equals_brute_force_sort(net, layer):
    arch, params, images, indices = net
    got = topk.scan(arch, params, _stream(images, indices, BATCH), layer=layer, k=9)
    acts = np.asarray(_forward(arch, params, images, upto=layer).acts[layer])
    assert got.values.shape == (acts.shape[-1], 9)
    _assert_equal(got, _brute_force(acts, indices, 9))
    # One entry per image and channel, best first.
    assert all(len(set(row)) == 9 for row in got.image)
    assert np.all(np.diff(got.values, axis=1) <= 0)


def test_ties_go_to_smaller_image_index(net):
    arch, params, images, indices = net
    got = topk.scan(arch, params, _stream(images, indices, BATCH), layer="conv5", k=9)
    np.testing.assert_array_equal(got.values[0], 0.0)
    np.testing.assert_array_equal(got.image[0], np.sort(indices)[:9])
    np.testing.assert_array_equal(got.h[0], 0)
    np.testing.assert_array_equal(got.w[0], 0)
    # Duplicated images tie exactly; where both are kept, the smaller index comes first.
    for a, b in [(3, 30), (17, 41)]:
        first, second = sorted((indices[a], indices[b]))
        for row in got.image:
            if first in row and second in row:
                assert list(row).index(first) + 1 == list(row).index(second)


def test_k_larger_than_number_of_images(net):
    arch, params, images, indices = net
    got = topk.scan(arch, params, _stream(images[:6], indices[:6], BATCH), layer="conv5", k=9)
    acts = np.asarray(_forward(arch, params, images[:6], upto="conv5").acts["conv5"])
    assert got.values.shape == (acts.shape[-1], 6)
    _assert_equal(got, _brute_force(acts, indices[:6], 6))


def test_bare_batches_get_consecutive_indices_and_mesh_sharding_agrees(net):
    arch, params, images, _ = net
    bare = topk.scan(arch, params, [images[i:i + BATCH] for i in range(0, 24, BATCH)], layer="conv5", k=4)
    acts = np.asarray(_forward(arch, params, images[:24], upto="conv5").acts["conv5"])
    _assert_equal(bare, _brute_force(acts, np.arange(24), 4))
    mesh = jax.make_mesh((len(jax.devices()),), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    batch = len(jax.devices()) * 4
    stream = [(images[i:i + batch], np.arange(i, min(i + batch, 24))) for i in range(0, 24, batch)]
    _assert_equal(topk.scan(arch, params, stream, layer="conv5", k=4, sharding=sharding), bare)


@pytest.mark.parametrize("kwargs, match", [
    (dict(layer="fc6"), "conv or pool"),
    (dict(layer="conv9"), "conv or pool"),
    (dict(k=0), "k must"),
    (dict(batches=[np.zeros((2, 28, 28, 3), np.float32)]), "array"),
    (dict(batches=[(np.zeros((2, 28, 28, 1), np.float32), np.arange(3))]), "indices"),
    (dict(batches=[(np.zeros((2, 28, 28, 1), np.float32), np.array([0, -1]))]), "indices"),
])
def test_bad_input_raises(net, kwargs, match):
    arch, params, images, _ = net
    kw = {"batches": [images[:2]], "layer": "conv5", "k": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        topk.scan(arch, params, kw.pop("batches"), **kw)
