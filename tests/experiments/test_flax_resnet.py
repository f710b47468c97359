"""The worked example of a user's own model (experiments.flax_resnet): it trains, resumes exactly, and its model
spec gives every analysis a Network whose ReLUs (written three ways) and pools the rules find."""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from experiments import flax_resnet
from experiments.configs import flax_resnet as resnet_config
from zfjax import deconv, network
from zfjax.analyses import topk
from zfjax.data import fashion_mnist


def _config(epochs: int):
    c = resnet_config.get_config("tiny")
    c.epochs, c.train_subset = epochs, 256
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resnet")
    summary = flax_resnet.run(_config(2), workdir)
    return workdir, summary


def test_a_killed_run_resumes_to_the_same_weights(trained, tmp_path):
    workdir, summary = trained
    assert summary["epochs"] == 2 and 0 <= summary["test_top1"] <= 1
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / "checkpoints" / "2")  # killed after epoch 1 was saved ...
    flax_resnet.run(_config(2), copy)  # ... and run again
    a, b = (flax_resnet.network(str(w)).variables for w in (workdir, copy))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_the_model_spec_is_a_network_the_rules_understand(trained):
    workdir, _ = trained
    net = network.load(f"experiments.flax_resnet:network:{workdir}")
    assert list(net.layers) == ["stem", "block1/relu", "block2/relu", "block3/relu"] and "pooled" in net.vectors
    assert [epoch for epoch, _ in net.snapshots()] == [1, 2]
    x = net.preprocess(np.random.default_rng(0).uniform(size=(2, 28, 28, 1)))
    np.testing.assert_allclose(net.to_display(x), np.clip(flax_resnet.display(x), 0, 1), rtol=1e-6)
    fn = lambda x: net.features("block3/relu")(net.variables, x)  # noqa: E731
    forms = {s.name for s in deconv.rule_sites(fn, x) if s.kind == "relu"}
    assert forms == {"jax.nn.relu", "where(x > 0, x, 0)", "max(0, x)"}
    a = deconv.project_fn(fn, x, 3, crop=True)
    b = deconv.project_fn(fn, x, 3, crop=False)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))


def test_an_untrained_workdir_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m experiments.flax_resnet"):
        flax_resnet.network(str(tmp_path))


@pytest.mark.parametrize("name", ["top9", "evolution", "occlusion", "invariance", "correspondence"])
def test_every_experiment_runs_on_the_model_spec(trained, tmp_path, name):
    import importlib
    workdir, _ = trained
    config = importlib.import_module(f"experiments.configs.{name}").get_config("tiny")
    config.model = f"experiments.flax_resnet:network:{workdir}"
    if name == "top9":
        config.layers = ("block3/relu",)
    if name == "evolution":
        config.layers, config.num_images = ("stem",), 64
    figures = importlib.import_module(f"experiments.{name}").run(config, tmp_path)
    assert figures and all((tmp_path / f.file).is_file() for f in figures)
    assert "flax_resnet" in (tmp_path / "index.html").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    net = network.load(config.model)
    if name == "top9":  # the figure's units are topk.scan's over the same test images, through the model
        images, _ = fashion_mnist.load("test")
        x = flax_resnet.preprocess(images[:config.num_images] / 255.0)
        top = topk.scan(net.feature_map("block3/relu"), net.variables, [x], k=9)
        maps = results["block3/relu"]["maps"]
        np.testing.assert_allclose(results["block3/relu"]["values"], top.values[maps], rtol=1e-5)
        assert results["block3/relu"]["image"] == top.image[maps].tolist()
    if name == "occlusion":
        assert results["layer"] == "block3/relu"  # the model's last listed map
    if name in ("invariance", "correspondence"):
        assert results["layers"] == ["stem", "pooled"] if name == "invariance" else ["block3/relu", "pooled"]
