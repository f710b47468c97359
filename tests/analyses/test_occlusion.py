"""Occlusion maps: the incremental (cone) path equals brute force, which equals a plain numpy loop over images."""
import jax
import numpy as np
import pytest

from zfjax.analyses import occlusion
from zfjax.network import models
from zfjax.network import receptive_field as rf

# (arch name, overrides, layer, patch, stride, fill): borders touched, strides that do not divide the image,
# ceil-mode pools with partial windows, LCN layers, non-square input, per-channel fill.
_SMALL_FC = {"fc6": {"features": 64}, "fc7": {"features": 64}}  # the property does not need 4096-wide fc layers
CASES = {
    "small_every_pixel": ("small", {}, "conv5", 1, 1, 0.0),
    "small_pool2_lcn": ("small", {}, "pool2", 8, 4, 1.5),
    "zfnet64": ("zfnet", dict(input_shape=(64, 64, 3), num_classes=10, init="fan_in", **_SMALL_FC), "conv5", 13, 5,
                -0.7),
    "alexnet_nonsquare": ("alexnet", dict(input_shape=(67, 71, 3), num_classes=7, init="fan_in", **_SMALL_FC),
                          "conv3", 9, 7, (0.5, -1.0, 2.0)),
}


def _random_params(arch: models.Arch, rng: np.random.Generator) -> models.Params:
    """He-normal weights and nonzero biases (so that windows must get the bias right), drawn by numpy: no compile."""
    return {name: {"w": (rng.standard_normal(s["w"]) * np.sqrt(2.0 / np.prod(s["w"][:-1]))).astype(np.float32),
                   "b": (0.1 * rng.standard_normal(s["b"])).astype(np.float32)}
            for name, s in models.param_shapes(arch).items()}


@pytest.fixture(scope="module")
def nets():
    out = {}
    for name, kw, *_ in CASES.values():
        arch = models.get(name, **kw)
        rng = np.random.default_rng(0)
        params = _random_params(arch, rng)
        image = rng.standard_normal(arch.input_shape).astype(np.float32)
        out[name] = (arch, params, image)
    return out


def _net(nets, case):
    name, _, layer, patch, stride, fill = CASES[case]
    return (*nets[name], layer, patch, stride, fill)


def _both(arch, params, image, layer, patch, stride, fill, label=3):
    kw = dict(patch=patch, stride=stride, fill=fill, layer=layer, batch_size=48)
    return (occlusion.occlusion_maps(arch, params, image, label, method="incremental", **kw),
            occlusion.occlusion_maps(arch, params, image, label, method="brute", **kw))


@pytest.mark.parametrize("case", sorted(CASES))
def test_incremental_equals_brute_force(nets, case):
    arch, params, image, layer, patch, stride, fill = _net(nets, case)
    inc, brute = _both(arch, params, image, layer, patch, stride, fill)
    rows, cols = (len(occlusion.grid(n, patch, stride)) for n in image.shape[:2])
    assert inc.prob_true.shape == inc.feature.shape == inc.top_label.shape == (rows, cols)
    assert inc.channel == brute.channel
    # The maps must actually vary with the square, or agreement would prove nothing.
    assert np.ptp(brute.feature) > 1e-3 * np.abs(brute.feature).max()
    assert np.ptp(brute.prob_true) > 1e-4
    np.testing.assert_allclose(inc.prob_true, brute.prob_true, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(inc.feature, brute.feature, rtol=1e-4, atol=1e-5 * np.abs(brute.feature).max())
    np.testing.assert_array_equal(inc.top_label, brute.top_label)


_forward = jax.jit(models.apply, static_argnames=("arch",))


def _numpy_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("case", ["small_pool2_lcn", "alexnet_nonsquare"])
def test_brute_force_equals_loop_over_occluded_images(nets, case):
    arch, params, image, layer, patch, stride, fill = _net(nets, case)
    label = 3
    brute = occlusion.occlusion_maps(arch, params, image, label, patch=patch, stride=stride, fill=fill, layer=layer,
                                     method="brute", batch_size=48)
    clean = _forward(arch, params, image[None]).acts[layer][0]
    channel = int(np.argmax(np.asarray(clean).sum(axis=(0, 1))))
    assert brute.channel == channel
    oy, ox = (occlusion.grid(n, patch, stride) for n in image.shape[:2])
    for i, j in [(0, 0), (len(oy) - 1, len(ox) - 1), (len(oy) // 2, 1), (1, len(ox) - 1)]:
        occluded = image.copy()
        occluded[oy[i]:oy[i] + patch, ox[j]:ox[j] + patch] = fill
        out = _forward(arch, params, occluded[None])
        probs = _numpy_softmax(np.asarray(out.logits[0], np.float64))
        np.testing.assert_allclose(brute.prob_true[i, j], probs[label], rtol=1e-4, atol=1e-7)
        assert brute.top_label[i, j] == np.argmax(probs)
        np.testing.assert_allclose(brute.feature[i, j], np.asarray(out.acts[layer][0, ..., channel]).sum(),
                                   rtol=1e-4)


def test_grid_positions_while_square_fits():
    np.testing.assert_array_equal(occlusion.grid(28, 8, 4), [0, 4, 8, 12, 16, 20])
    np.testing.assert_array_equal(occlusion.grid(28, 7, 5), [0, 5, 10, 15, 20])
    np.testing.assert_array_equal(occlusion.grid(5, 5, 3), [0])


def test_cone_windows_cover_every_changed_unit(nets):
    """Units that change when the square is drawn (found by brute force) lie inside that position's window."""
    arch, params, image, *_ = _net(nets, "alexnet_nonsquare")
    patch, stride = 9, 7
    oy, ox = (occlusion.grid(n, patch, stride) for n in image.shape[:2])
    size_y, start_y = occlusion.cone_windows(arch, 0, oy, patch)
    size_x, start_x = occlusion.cone_windows(arch, 1, ox, patch)
    clean = _forward(arch, params, image[None]).acts
    names = [st.name for st in rf.stages(arch)]
    for i, j in [(0, 0), (len(oy) - 1, len(ox) - 1), (2, 5)]:
        occluded = image.copy()
        occluded[oy[i]:oy[i] + patch, ox[j]:ox[j] + patch] = 50.0
        acts = _forward(arch, params, occluded[None]).acts
        for k, name in enumerate(names):
            diff = np.abs(np.asarray(acts[name]) - np.asarray(clean[name]))[0]
            # Exactly equal on CPU; GPU convolutions may differ in the last bits away from the square.
            changed_y, changed_x = np.nonzero(np.any(diff > 1e-5 * diff.max(), axis=-1))
            assert changed_y.size > 0, name
            assert start_y[k][i] <= changed_y.min() and changed_y.max() < start_y[k][i] + size_y[k], name
            assert start_x[k][j] <= changed_x.min() and changed_x.max() < start_x[k][j] + size_x[k], name


@pytest.mark.parametrize("kwargs, match", [
    (dict(patch=29, stride=4), "larger than"),
    (dict(patch=4, stride=0), "stride"),
    (dict(patch=0, stride=2), "patch"),
    (dict(patch=4, stride=2, label=10), "label"),
    (dict(patch=4, stride=2, label=-1), "label"),
    (dict(patch=4, stride=2, image=np.zeros((1, 28, 28, 1), np.float32)), "HWC"),
    (dict(patch=4, stride=2, image=np.zeros((28, 28, 3), np.float32)), "HWC"),
    (dict(patch=4, stride=2, image=np.zeros((28, 28, 1), np.uint8)), "floating"),
    (dict(patch=4, stride=2, layer="fc6"), "conv or pool"),
    (dict(patch=4, stride=2, method="fast"), "method"),
    (dict(patch=4, stride=2, fill=(0.0, 1.0)), "fill"),
    (dict(patch=4, stride=2, batch_size=0), "batch_size"),
])
def test_bad_input_raises(nets, kwargs, match):
    arch, params, image = nets["small"]
    kw = {"image": image, "label": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        occlusion.occlusion_maps(arch, params, kw.pop("image"), kw.pop("label"), **kw)
