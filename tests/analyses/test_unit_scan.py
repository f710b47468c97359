"""zfjax.analyses.unit_scan: the explorer's one-pass description of every unit, against topk.scan and numpy on the
activations themselves; shards combined equal one pass over the whole dataset."""
import jax
import numpy as np
import pytest

from zfjax import network
from zfjax.analyses import topk, unit_scan
from zfjax.network import models

LAYERS = ("conv1", "conv2", "pool2", "conv5")


@pytest.fixture(scope="module")
def setup():
    arch = models.get("small", conv1={"features": 6}, conv2={"features": 8}, conv3={"features": 8},
                      conv4={"features": 8}, conv5={"features": 8}, fc6={"features": 16}, fc7={"features": 16})
    params = models.init(arch, jax.random.key(3))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 28, 28, 1)).astype(np.float32)
    x[::4] = 0.0  # blank images: no unit fires on them (zero biases)
    labels = rng.integers(0, 10, size=23)
    return arch, params, x, labels, network.from_arch(arch, params, 0.0, 1.0)


def _batches(x, labels, indices, size):
    return [(x[i:i + size], indices[i:i + size], labels[i:i + size]) for i in range(0, len(x), size)]


def test_scan_equals_topk_scan_and_the_activations_statistics(setup):
    arch, params, x, labels, net = setup
    got = unit_scan.scan(net, LAYERS, _batches(x, labels, np.arange(23), 8), k=12)
    acts = models.apply(arch, params, x).acts
    for layer in LAYERS:
        want = topk.scan(arch, params, [x[:8], x[8:16], x[16:]], layer=layer, k=12)
        s = got[layer]
        np.testing.assert_array_equal(s.top.image, want.image)
        np.testing.assert_array_equal(s.top.h, want.h)
        np.testing.assert_array_equal(s.top.w, want.w)
        np.testing.assert_allclose(s.top.values, want.values, rtol=1e-6)
        np.testing.assert_array_equal(s.labels, labels[want.image])
        a = np.asarray(acts[layer], np.float64)  # (N, h, w, C)
        np.testing.assert_allclose(s.mean, a.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(s.fires, (a.max(axis=(1, 2)) > 0).mean(0))
        assert s.images == 23 and np.all(s.fires <= 17 / 23) and s.fires.max() > 0


def test_combined_shards_equal_one_pass(setup):
    *_, x, labels, net = setup
    whole = unit_scan.tally(net, LAYERS, _batches(x, labels, np.arange(23), 5), k=9)
    order = np.random.default_rng(1).permutation(23)  # two shards, interleaved, other batch sizes
    parts = [unit_scan.tally(net, LAYERS, _batches(x[order[i::2]], labels[order[i::2]], order[i::2], 4), k=9)
             for i in range(2)]
    merged = unit_scan.combine(parts)
    for layer in LAYERS:
        a, b = whole[layer], merged[layer]
        for field in ("image", "position", "labels", "fired"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        np.testing.assert_array_equal(a.values, b.values)  # the same per-image maxima, whatever the batch
        np.testing.assert_allclose(a.activation_sum, b.activation_sum, rtol=1e-12)
        assert a.images == b.images == 23
    assert unit_scan.gather(whole) == whole  # one process: nothing to gather


def test_fewer_images_than_k_and_a_process_with_no_images(setup):
    *_, x, labels, net = setup
    empty = unit_scan.tally(net, ("conv2",), [], k=9)
    some = unit_scan.tally(net, ("conv2",), _batches(x[:3], labels[:3], np.array([7, 2, 9]), 3), k=9)
    stats = unit_scan.finish(unit_scan.combine([empty, some]), {"conv2": 14})["conv2"]
    assert stats.top.values.shape == (8, 3) and stats.images == 3
    assert np.all(np.sort(stats.top.image, axis=1) == [2, 7, 9])  # each unit: the three images, once each
    label_of = {7: labels[0], 2: labels[1], 9: labels[2]}
    np.testing.assert_array_equal(stats.labels, np.vectorize(label_of.get)(stats.top.image))


def test_bad_input_is_a_clear_error(setup):
    *_, x, labels, net = setup
    with pytest.raises(ValueError, match="no images to scan: the dataset is empty"):
        unit_scan.scan(net, ("conv1",), [])
    with pytest.raises(ValueError, match=r"has no layer 'conv9'; its layers: \['conv1'"):
        unit_scan.scan(net, ("conv9",), _batches(x, labels, np.arange(23), 8))
    with pytest.raises(ValueError, match=r"must be \(N, 28, 28, 1\)"):
        unit_scan.scan(net, ("conv1",), [(x[:, :20], np.arange(23), labels)])
    with pytest.raises(ValueError, match="one index and one label per image"):
        unit_scan.scan(net, ("conv1",), [(x, np.arange(22), labels)])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        unit_scan.scan(net, ("conv1",), _batches(x, labels, np.arange(23), 8), k=0)
