"""The explorer on the other networks the command takes: a user's Flax model (``--config.model``, images from the
config's data fields) and ZFNet on ImageNet (tfds mock data, narrow layers, random weights); each against
topk.scan and the projections of the same units, computed here from the model alone."""
import functools

import jax
import numpy as np
import pytest

from tests import flax_net
from experiments import explore, subject
from experiments.configs import explore as explore_config
from zfjax import deconv
from zfjax.analyses import topk
from zfjax.data import fashion_mnist
from zfjax.deconv import projection
from zfjax.pictures import explorer, plots, sprites


@pytest.fixture(scope="session")
def check_unit(reference_tile, sheet_tile, tile_column):
    """``check_unit(folder, layer_data, record, project, x, hw)``: the unit's deconvnet tiles on the sheets equal
    `project(image, channel, position)` cut, stretched, 8-bit, shrunk like the sheet's tiles."""
    def check(folder, data, record, project, x, hw):
        side = max(data["tile"])
        for j, t in enumerate(record["top"]):
            p = np.asarray(project(x[t["image"]][None], record["unit"], np.array([t["h"], t["w"]])))[0]
            assert p.shape[:2] == hw
            want = sprites.pixels(plots.normalize_projection(reference_tile(p, t["window"], 0.0)), side)
            got = sheet_tile(folder, data, record, tile_column(data, "deconvnet", j))
            assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1, (record["unit"], j)
    return check


def test_a_users_flax_model(check_unit, explorer_site, tmp_path):
    config = explore_config.get_config("tiny")
    config.model = "tests.flax_net:network"
    explore.run(config, tmp_path)
    folder, site, layers = explorer_site(tmp_path)
    assert list(layers) == ["conv_a", "conv_b"] and site["classes"] == list(fashion_mnist.CLASSES)
    net = flax_net.network()
    images, labels = fashion_mnist.load("test")
    x = flax_net.preprocess(images[:40] / 255.0)  # the model's inputs, from the raw test images
    for layer, rf in (("conv_a", 3), ("conv_b", 8)):
        fn = net.features(layer)
        top = topk.scan(fn, net.variables, [x[:25], x[25:]], k=20)
        units = layers[layer]["units"]
        assert len(units) == top.values.shape[0] == {"conv_a": 6, "conv_b": 8}[layer]
        for c, record in enumerate(units):
            assert [t["image"] for t in record["top"]] == top.image[c, :9].tolist()
            assert [t["label"] for t in record["top"]] == labels[top.image[c, :9]].tolist()
            np.testing.assert_allclose([t["value"] for t in record["top"]], top.values[c, :9], rtol=1e-4, atol=1e-5)
            for t in record["top"]:  # 3x3 convs, a 2x2 pool between: conv_b sees 8x8 pixels, conv_a 3x3
                y0, y1, x0, x1 = t["window"]
                scale, reach = (1, 1) if layer == "conv_a" else (2, 3)
                assert y0 <= max(0, scale * t["h"] - reach) and min(28, scale * t["h"] - reach + rf) <= y1
                assert x0 <= max(0, scale * t["w"] - reach) and min(28, scale * t["w"] - reach + rf) <= x1
                assert (y1 - y0, x1 - x0) == (rf, rf)
        project = functools.partial(_project_fn, fn, net.variables)
        live = [u for u in units if not u["dead"]]
        for record in (live[0], live[-1]):
            check_unit(folder, layers[layer], record, project, x, (28, 28))


@functools.partial(jax.jit, static_argnums=0)
def _project_fn(fn, variables, image, channel, position):
    return projection.project_fn(functools.partial(fn, variables), image, channel, position)


_project = jax.jit(deconv.project, static_argnames=("arch", "layer"))


def test_zfnet_on_imagenet_mock_data(check_unit, explorer_site, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = explore_config.get_config("zfnet")
    small = {name: {"features": 8} for name in ("conv1", "conv2", "conv3", "conv4", "conv5")}
    config.train.update(data_dir=str(tmp_path / "data"), resize_size=72, image_size=64, num_data_threads=1,
                        model_overrides={**small, "fc6": {"features": 16}, "fc7": {"features": 16}})
    config.update(random_init=True, batch_size=4, num_threads=1, tile_size=24, class_names=("tench", "goldfish"))
    with tfds.testing.mock_data(num_examples=8):
        explore.run(config, tmp_path / "explore")
        studied = subject.load(config)
        x, _ = subject.images(studied, studied.data.eval)(np.arange(len(studied.data.eval)))
        net = studied.built
    folder, site, layers = explorer_site(tmp_path / "explore")
    assert [layer["name"] for layer in site["layers"]] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert site["images"] == 8 and len(site["classes"]) >= 2 and site["classes"][:2] == ["tench", "goldfish"]
    assert {n: len(d["units"]) for n, d in layers.items()} == dict.fromkeys(layers, 8)
    assert max(layers["conv5"]["tile"]) == 24  # conv5 sees the whole 64x64 image: shrunk to the tile size
    top = topk.scan(net.arch, net.params, [x], layer="conv5", k=8)
    for c, record in enumerate(layers["conv5"]["units"]):
        assert [t["image"] for t in record["top"]] == top.image[c].tolist()
        np.testing.assert_allclose([t["value"] for t in record["top"]], top.values[c], rtol=1e-4, atol=1e-5)
    record = next(u for u in layers["conv5"]["units"] if not u["dead"])
    check_unit(folder, layers["conv5"], record,
                lambda image, c, p: _project(net.arch, net.params, image, "conv5", c, position=p), x, (64, 64))
    assert explorer.read_data(folder / "data" / "site.js")["k"] == 8  # 8 images: the top 8
