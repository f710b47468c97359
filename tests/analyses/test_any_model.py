"""Every analysis of the paper on a model zfjax does not know (a small Flax ResNet with BatchNorm), as a
zfjax.network.Network from zfjax.network.adapters: top-k scan, top-9 tiles, occlusion, invariance, correspondence, each
against a direct computation with the model itself."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zfjax import deconv, network
from zfjax.analyses import correspondence, invariance, occlusion, topk
from zfjax.network import adapters
from zfjax.pictures import tiles


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(nn.Conv(6, (3, 3), name="stem")(x)))
        x = nn.max_pool(x, (2, 2), (2, 2))
        y = nn.Conv(6, (3, 3), name="conv")(x)
        x = jnp.maximum(x + y, 0.0)
        self.sow("intermediates", "block", x)
        h = nn.relu(nn.Dense(8, name="hidden")(x.mean((1, 2))))
        self.sow("intermediates", "features", h)
        return nn.Dense(4, name="fc")(h)


@pytest.fixture(scope="module")
def net() -> network.Network:
    x = jnp.zeros((1, 16, 16, 1))
    variables = Net().init(jax.random.key(0), x)
    return adapters.network(Net(), variables, input_shape=(16, 16, 1), name="net", layers=["stem", "block"],
                            class_names=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(7, 16, 16, 1)).astype(np.float32)


def test_network_of_a_flax_model(net, images):
    network.check(net)
    assert list(net.layers) == ["stem", "block"] and net.num_classes() == 4
    logits = net.apply(net.variables, images)
    np.testing.assert_allclose(logits, Net().apply(net.variables, images), rtol=1e-6)
    assert net.features("block")(net.variables, images).shape == (7, 8, 8, 6)
    with pytest.raises(ValueError, match="no feature map 'nope'"):
        adapters.network(Net(), net.variables, input_shape=(16, 16, 1), layers=["nope"])


def test_topk_scan_of_a_feature_function_equals_brute_force(net, images):
    top = topk.scan(net.features("block"), net.variables, [images[:4], images[4:]], k=3)
    acts = np.asarray(net.features("block")(net.variables, images))  # (N, h, w, c)
    best = acts.reshape(7, -1, 6).max(1)  # (N, c)
    for c in range(6):
        order = np.argsort(-best[:, c], kind="stable")[:3]
        np.testing.assert_array_equal(top.image[c], order)
        np.testing.assert_allclose(top.values[c], best[order, c], rtol=1e-6)
        for j, i in enumerate(order):
            assert acts[i, top.h[c, j], top.w[c, j], c] == top.values[c, j]


def test_top_tiles_hold_the_projection_of_the_same_unit(net, images):
    top = topk.scan(net.features("block"), net.variables, [images], k=2)
    cut = tiles.top_tiles(net, top, [1, 4], lambda i: (images[i], np.full_like(images[i], 0.25)), "block")
    fn = lambda x: net.features("block")(net.variables, x)  # noqa: E731
    field = tiles.field(net, "block")
    for m, c in enumerate([1, 4]):
        for j in range(2):
            i, pos = top.image[c, j], np.array([top.h[c, j], top.w[c, j]])
            want = np.asarray(deconv.project_fn(fn, images[i][None], c, pos, crop=False))[0]
            y0, y1, x0, x1 = cut.windows[m, j]
            assert (y1 - y0, x1 - x0) == field.size()
            inside = np.zeros(want.shape[:2], bool)
            inside[max(y0, 0):y1, max(x0, 0):x1] = True
            assert np.all(want[~inside] == 0) and np.abs(want).max() > 0  # the tile holds the whole projection
            big = np.pad(want, ((16, 16), (16, 16), (0, 0)))  # zeros outside the image, as the tile has
            np.testing.assert_allclose(cut.projections[m, j], big[y0 + 16:y1 + 16, x0 + 16:x1 + 16], rtol=1e-5,
                                       atol=1e-7)


def test_occlusion_of_any_model_equals_occluding_by_hand(net, images):
    image, label, patch, stride = images[0], 2, 5, 4
    maps = occlusion.occlusion_maps(net, None, image, label, patch=patch, stride=stride, fill=0.3, layer="block")
    block = np.asarray(net.features("block")(net.variables, image[None]))[0]
    channel = int(np.argmax(block.sum((0, 1))))
    assert maps.channel == channel
    for i, y in enumerate(occlusion.grid(16, patch, stride)):
        for j, x in enumerate(occlusion.grid(16, patch, stride)):
            occluded = image.copy()
            occluded[y:y + patch, x:x + patch] = 0.3
            probs = np.asarray(jax.nn.softmax(net.apply(net.variables, occluded[None])[0]))
            np.testing.assert_allclose(maps.prob_true[i, j], probs[label], rtol=1e-5)
            assert maps.top_label[i, j] == np.argmax(probs)
            fmap = np.asarray(net.features("block")(net.variables, occluded[None]))[0]
            np.testing.assert_allclose(maps.feature[i, j], fmap[..., channel].sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="incremental path needs a built-in net"):
        occlusion.occlusion_maps(net, None, image, label, patch=patch, stride=stride, layer="block",
                                 method="incremental")


def test_invariance_and_correspondence_of_any_model(net, images):
    labels = np.array([0, 1, 2, 3, 0, 1, 2])
    sw = invariance.sweep(net, None, images, labels, "translate", [0.0, 2.0], layers=["stem", "features"])
    moved = np.asarray(invariance.transform(images, "translate", 2.0))
    for layer in ("stem", "features"):
        f = net.features(layer) if layer in net.layers else adapters.features(Net(), layer, net.variables)[0]
        want = np.linalg.norm((np.asarray(f(net.variables, moved)) - np.asarray(f(net.variables, images)))
                              .reshape(7, -1), axis=1)
        np.testing.assert_allclose(sw.distance[layer][:, 1], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(sw.distance[layer][:, 0], 0, atol=1e-5)
    probs = np.asarray(jax.nn.softmax(net.apply(net.variables, moved), -1))[np.arange(7), labels]
    np.testing.assert_allclose(sw.prob_true[:, 1], probs, rtol=1e-5)
    boxes = np.array([[2, 3, 4, 4]] * 7)
    signs = correspondence.sign_changes(net, None, images, boxes, ["block"])["block"]
    f = np.asarray(net.features("block")(net.variables, images)).reshape(7, -1)
    g = np.asarray(net.features("block")(net.variables, correspondence.mask(images, boxes))).reshape(7, -1)
    changed = np.abs(f - g) > 1e-6 * np.abs(f).max(1, keepdims=True)
    np.testing.assert_array_equal(signs, np.where(changed, np.sign(f - g), 0))
