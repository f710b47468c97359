"""What the visual experiments (top9, evolution, filters) share: the command line, the network a config names
(a train_imagenet checkpoint, imported weights, or random weights for tests; `SOURCES`) and its images.

Each experiment module has ``run(config, workdir) -> list[report.Figure]`` (it writes its figures and its own
``index.html``; the demo links the returned figures) and ends with ``visual.main(run)``.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Callable, Iterator

import jax
import numpy as np

from zfjax import models, train, trained, visualize, weights
from zfjax import network as zfjax_network
from zfjax.data import Data, info as data_info, load as load_data, pipeline

PRESET_OF = {"fashion_mnist": "fashion_mnist", "imagenet2012": "zfnet"}  # a dataset's preset, for messages
RANDOM = "random initial weights"  # the source of `random_net`'s networks


@dataclasses.dataclass(frozen=True, eq=False)
class Net(trained.Net):
    """A `zfjax.trained.Net` and the training config of the experiment's preset, which names its data. `data` is
    read on first use, normalized as the network's inputs are, so experiments on photos need no dataset on disk."""
    train: Any = None

    @functools.cached_property
    def data(self) -> Data:
        return load_data(self.train, normalization=(self.mean, self.scale))


def load_net(config: Any) -> Net:
    """The network of a `experiments.configs.visual` config, from the first source field that is set (`SOURCES`):
    ``checkpoint``, ``weights`` or ``random_init``; ValueError when none is."""
    for field, load in SOURCES:
        if config[field]:
            net = load(config)
            return Net(**{f.name: getattr(net, f.name) for f in dataclasses.fields(net)}, train=config.train)
    raise ValueError("no network: set --config.checkpoint=<workdir of a train_imagenet run> or "
                     "--config.weights=<.safetensors/.pth file>")


def from_checkpoint(config: Any) -> trained.Net:
    """A training run's newest checkpoint with the architecture and normalization the run recorded; ValueError
    when the preset's data cannot feed it (another dataset or image size), naming the field and the fix."""
    net = trained.load_net(config.checkpoint)
    want = data_info(config.train)
    if net.dataset and net.dataset != want.name:
        raise ValueError(f"{config.checkpoint} was trained on {net.dataset}, but the preset's train.dataset is "
                         f"{want.name!r}: use the {PRESET_OF.get(net.dataset, net.dataset)} preset "
                         f"(--config=<config file>:{PRESET_OF.get(net.dataset, net.dataset)}) or "
                         f"--config.train.dataset={net.dataset}")
    if tuple(net.arch.input_shape) != want.input_shape:
        raise ValueError(f"{config.checkpoint} takes {net.arch.input_shape} inputs, but the preset's data gives "
                         f"{want.input_shape}: set --config.train.image_size={net.arch.input_shape[0]}")
    return net


def from_weights(config: Any) -> trained.Net:
    """Imported weights (`zfjax.weights`): torchvision's layout is torchvision's AlexNet, any other the preset's
    architecture; inputs normalized by ``config.normalization`` (module `experiments.configs.visual`)."""
    state = weights.read(config.weights)
    layout = config.weights_layout or weights.guess_layout(state)
    shape = data_info(config.train)
    if layout == "torchvision":
        if shape.name != "imagenet2012":
            raise ValueError(f"{config.weights} holds torchvision's AlexNet, an ImageNet network: use an ImageNet "
                             f"preset (--config=<config file>:alexnet), not {shape.name}")
        arch = models.get("alexnet_torchvision", num_classes=shape.num_classes, input_shape=shape.input_shape)
    else:
        arch = train.build_arch(config.train, shape)
    spec = config.normalization or ("torchvision" if layout == "torchvision" else "dataset")
    mean, scale = _dataset_normalization(config.train) if spec == "dataset" else \
        trained.normalization(spec, arch.input_shape[2], config.train.pixel_scale)
    return trained.Net(arch, weights.from_torch(state, arch, layout), mean, scale,
                       f"{config.weights} (inputs normalized: {spec})")


def random_net(config: Any) -> trained.Net:
    """Freshly initialized weights of the preset's architecture (tests and smoke runs)."""
    arch = train.build_arch(config.train, data_info(config.train))
    mean, scale = _dataset_normalization(config.train)
    return trained.Net(arch, models.init(arch, jax.random.key(config.train.seed)), mean, scale,
                       RANDOM, dataset=config.train.dataset)


def _dataset_normalization(train_config: Any) -> tuple[np.ndarray, float]:
    """The normalization a training run on `train_config` would use: its dataset's mean and ``pixel_scale``."""
    return np.asarray(load_data(train_config).mean, np.float32), float(train_config.pixel_scale)


# Where a network can come from: the config field that selects it, and how it is loaded.
SOURCES: tuple[tuple[str, Callable[[Any], trained.Net]], ...] = (
    ("checkpoint", from_checkpoint), ("weights", from_weights), ("random_init", random_net))


def caveat(net: trained.Net) -> str:
    """A sentence for captions when the network has not learned much (random weights, near-chance accuracy)."""
    if net.source == RANDOM:
        return "The weights are random (untrained): the figures show the architecture, not learned features."
    if net.top1 is not None and net.top1 < 2.0 / net.arch.num_classes:
        return (f"This network is barely trained (test top-1 {100 * net.top1:.1f}%, chance is "
                f"{100 / net.arch.num_classes:.1f}%): expect little structure.")
    return ""


def network(net: Net) -> zfjax_network.Network:
    """`net` as the `zfjax.network.Network` the figure functions take."""
    return zfjax_network.from_arch(net.arch, net.params, net.mean, net.scale, name=net.arch.name)


def _view(crops: np.ndarray, axis: int = 0) -> np.ndarray:
    """The one view of evaluated examples the figures use: the center crop of 10 (ImageNet), or the only one."""
    return np.take(crops, 4 if crops.shape[axis] == 10 else 0, axis=axis)


def subset(source: Any, n: int) -> Any:
    """The first `n` examples of `source` (all when n is 0 or larger than it)."""
    return pipeline.Subset(source, n) if 0 < n < len(source) else source


def batches(net: Net, source: Any, batch_size: int, num_threads: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, dataset indices) of every example of `source` once, in order, with a progress bar."""
    from tqdm import tqdm
    seen = 0
    with tqdm(total=len(source), unit="img", leave=False, mininterval=1.0, file=sys.stderr) as bar:
        for b in pipeline.eval_batches(source, net.data.eval_transform, global_batch=batch_size,
                                       num_threads=num_threads):
            images = _view(b["image"][b["mask"] > 0], axis=1)
            yield images, np.arange(seen, seen + len(images))
            seen += len(images)
            bar.update(len(images))


def images(net: Net, source: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """indices -> (network inputs, the images as shown in [0, 1]) of those examples of `source`."""
    def get(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([_view(net.data.eval_transform(source[int(i)])["image"]) for i in indices])
        return x, visualize.to_display(x, net.mean, net.scale)
    return get


def pick_maps(top_values: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` feature maps drawn at random (seeded) among those whose strongest activation is positive, sorted."""
    alive = np.flatnonzero(top_values > 0)
    if not len(alive):
        raise ValueError("no feature map of this layer fires on any image: is the network trained?")
    return np.sort(np.random.default_rng(seed).choice(alive, min(n, len(alive)), replace=False))


from experiments.cli import main  # noqa: E402  (re-exported: the visual scripts call visual.main)

__all__ = ["Net", "SOURCES", "load_net", "from_checkpoint", "from_weights", "random_net", "caveat", "network",
           "subset", "batches", "images", "pick_maps", "main"]
