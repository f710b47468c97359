"""A trained network as one value: the record a run writes (architecture, input normalization, dataset),
`trained.load_net` with no config in hand (also for runs from before the record), and imported weights' input
normalization, each against an independent computation (numpy, the config, the paper's projection)."""
import json
import shutil

import jax
import numpy as np
import pytest

from experiments import import_weights
from experiments.configs import fashion_mnist as fashion_mnist_config
from zfjax import deconv
from zfjax.data import fashion_mnist, imagenet
from zfjax.data import info as data_info
from zfjax.network import models, weights
from zfjax.training import checkpoints, metrics, train, trained

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(fashion_mnist.DEFAULT_DIR).is_dir(),
                                reason="needs the embedded Fashion-MNIST files")


def fmnist_config():
    """The Fashion-MNIST config itself (conv3-5 narrowed to 64 maps: not `models.get("small")`), 3 steps."""
    c = fashion_mnist_config.get_config()
    c.train_subset, c.eval_subset, c.max_steps, c.snapshot_epochs = 512, 128, 3, ()
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fmnist")
    train.train_and_evaluate(fmnist_config(), workdir)
    return workdir


def test_a_fashion_mnist_run_loads_as_its_network_and_projects(run):
    net = trained.load_net(run)
    c = fmnist_config()
    assert net.arch == train.build_arch(c, data_info(c))
    assert net.arch.conv("conv3").features == 64 != models.get("small").conv("conv3").features
    step, params = checkpoints.latest(run)
    assert net.step == step == 3 and net.dataset == "fashion_mnist" and net.source == f"{run} (step 3)"
    jax.tree.map(np.testing.assert_array_equal, net.params, params)
    images, _ = fashion_mnist.load("train")
    np.testing.assert_allclose(net.mean, images[:512].mean(0, dtype=np.float64), rtol=1e-6)
    assert float(net.scale) == pytest.approx(1 / 255)
    assert net.top1 == metrics.final(run / metrics.METRICS_FILE, "eval_top1") is not None

    test, _ = fashion_mnist.load("test")
    x = ((test[:2].astype(np.float64) - images[:512].mean(0)) / 255).astype(np.float32)
    np.testing.assert_allclose(net.inputs(list(test[:2])), x, atol=1e-6)
    channel = int(np.argmax(np.asarray(models.apply(net.arch, net.params, x, upto="conv3").acts["conv3"]).max(
        axis=(0, 1, 2))))
    got = np.asarray(deconv.project(net.arch, net.params, x, "conv3", channel))
    want = np.asarray(deconv.project_reference(net.arch, net.params, x, "conv3", channel))
    assert np.abs(got).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_a_run_without_a_record_loads_from_the_config_in_its_checkpoint(run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / checkpoints.NETWORK_FILE).unlink()
    (old / checkpoints.MEAN_FILE).unlink()
    net, want = trained.load_net(old), trained.load_net(run)
    assert net.arch == want.arch and net.dataset == want.dataset and float(net.scale) == float(want.scale)
    np.testing.assert_array_equal(net.mean, want.mean)


def test_record_round_trips_and_a_damaged_one_is_named(tmp_path):
    for name in models.ARCHS:
        arch = models.get(name)
        assert models.from_dict(json.loads(json.dumps(models.to_dict(arch)))) == arch
    arch = models.get("zfnet", remove=("conv3",), conv1={"kernel": 11}, num_classes=7)
    checkpoints.save_network(tmp_path, checkpoints.NetworkRecord(arch, np.arange(3.0), np.array([1.0, 2.0, 3.0]), ""))
    record = checkpoints.read_network(tmp_path)
    assert record.arch == arch and record.dataset == ""
    np.testing.assert_array_equal(record.mean, [0, 1, 2])
    np.testing.assert_array_equal(record.scale, [1, 2, 3])
    assert checkpoints.read_network(tmp_path / "none") is None
    (tmp_path / checkpoints.NETWORK_FILE).write_text('{"arch": {"name": "zfnet", "convs": [{"nam": 1}]')
    with pytest.raises(ValueError, match=rf"network record {tmp_path / 'network.json'} is unreadable"):
        checkpoints.read_network(tmp_path)
    with pytest.raises(ValueError, match="not a Conv description"):
        models.from_dict({**models.to_dict(arch), "convs": [{"name": "conv1", "width": 3}]})


def test_normalization_of_imported_weights():
    photo = __import__("skimage.data").data.chelsea()
    arch = models.get("alexnet_torchvision")
    mean, scale = trained.normalization("torchvision", 3)
    net = trained.Net(arch, {}, mean, scale, "test")
    tv_mean, tv_std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want = (imagenet.resize_center(photo, 224) / 255.0 - tv_mean) / tv_std
    np.testing.assert_allclose(net.inputs([photo])[0], want, atol=1e-5)
    mean, scale = trained.normalization("100,110,120", 3, scale=0.5)
    np.testing.assert_array_equal(mean, [100, 110, 120])
    assert scale == 0.5
    np.testing.assert_array_equal(trained.normalization("33", 3)[0], [33, 33, 33])
    with pytest.raises(ValueError, match="unknown normalization 'imagenet'"):
        trained.normalization("imagenet", 3)
    with pytest.raises(ValueError, match="has 2 values; this network has 3 channels"):
        trained.normalization("1,2", 3)
    with pytest.raises(ValueError, match="for RGB inputs"):
        trained.normalization("torchvision", 1)


def test_imported_weights_load_as_a_network_when_their_normalization_is_given(tmp_path):
    small = models.get("small")
    params = jax.device_get(models.init(small, jax.random.key(0)))
    weights.save(params, tmp_path / "w.safetensors", small)
    import_weights.import_weights(tmp_path / "w.safetensors", tmp_path / "bare", "small")
    with pytest.raises(ValueError, match="records no network.*--normalization"):
        trained.load_net(tmp_path / "bare")
    import_weights.import_weights(tmp_path / "w.safetensors", tmp_path / "run", "small", normalization="72.9",
                                  pixel_scale=1 / 255)
    net = trained.load_net(tmp_path / "run")
    assert net.arch == small and net.step == 0 and net.dataset == "" and net.top1 is None
    np.testing.assert_allclose(net.mean, [72.9], rtol=1e-6)
    assert float(net.scale) == pytest.approx(1 / 255)
    jax.tree.map(np.testing.assert_array_equal, net.params, params)
