"""What the visual experiments (top9, evolution, filters) share: the command line, the network a config names
(a train_imagenet checkpoint, imported weights, or random weights for tests) and its images.

Each experiment module has ``run(config, workdir) -> list[report.Figure]`` (it writes its figures and its own
``index.html``; the demo links the returned figures) and ends with ``visual.main(run)``.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterator, NamedTuple

import jax
import numpy as np

from zfjax import checkpoints, models, train, visualize, weights
from zfjax import network as zfjax_network
from zfjax.data import Data, load as load_data, pipeline


class Net(NamedTuple):
    """A network, the data it was trained on, and its input normalization ``(pixel - mean) * scale``."""
    arch: models.Arch
    params: models.Params
    data: Data
    mean: np.ndarray
    scale: float
    source: str  # where the weights came from, for captions


def load_net(config: Any) -> Net:
    """The network of a `experiments.configs.visual` config: ``checkpoint`` (newest step), else ``weights``, else
    random weights when ``random_init``; ValueError when none is given."""
    data = load_data(config.train)
    arch = train.build_arch(config.train, data)
    if config.checkpoint:
        step, params = checkpoints.latest(config.checkpoint)
        source = f"{config.checkpoint} (step {step})"
    elif config.weights:
        params, source = weights.load(config.weights, arch, config.weights_layout or None), config.weights
    elif config.random_init:
        params, source = models.init(arch, jax.random.key(config.train.seed)), "random initial weights"
    else:
        raise ValueError("no network: set --config.checkpoint=<workdir of a train_imagenet run> or "
                         "--config.weights=<.safetensors/.pth file>")
    models.check_params(arch, params)
    mean = np.asarray(data.mean, np.float32)
    return Net(arch, params, data, mean, float(config.train.pixel_scale), source)


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

__all__ = ["Net", "load_net", "network", "subset", "batches", "images", "pick_maps", "main"]
