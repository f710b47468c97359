"""The network an experiment studies and its data, as one `Subject`: a built-in net (a training run's checkpoint,
imported weights, random weights for tests) or the user's own model (``--config.model=package.module:function``).

Every visual and analysis experiment takes the network fields of `experiments.configs.visual`; `load` reads the
first one that is set (`SOURCES`). The analyses see only ``Subject.net``, a `zfjax.network.Network`. The data is
read on first use: a built-in net's data is normalized as the net was trained (so photos need no dataset on disk); a
user's model gets the dataset's pixels in [0, 1] through its own ``preprocess``.

Each experiment module has ``run(config, workdir) -> list[report.Figure]`` (it writes its figures and its own
``index.html``; the demo links the returned figures) and ends with ``subject.main(run)``.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

from zfjax import network
from zfjax.data import Data, fashion_mnist, pipeline
from zfjax.data import info as data_info
from zfjax.data import load as load_data
from zfjax.data import transfer as transfer_data
from zfjax.network import models, weights
from zfjax.training import train, trained

PRESET_OF = {"fashion_mnist": "fashion_mnist", "imagenet2012": "zfnet"}  # a dataset's preset, for messages
RANDOM = "random initial weights"  # the source of `random_net`'s networks


@dataclasses.dataclass(frozen=True, eq=False)
class Subject:
    """What an experiment studies: `net` (what the analyses take), where its weights came from (`source`, for
    captions), the preset's training config (`train`: it names the data) and, for a built-in net, its record
    (`built`: architecture, parameters, normalization, step, test accuracy; None for a user's model)."""
    net: network.Network
    source: str
    train: Any
    built: trained.Net | None = None

    @functools.cached_property
    def data(self) -> Data:
        """The preset's dataset, in the network's input space (see `inputs`)."""
        if self.built is not None:
            return load_data(self.train, normalization=(self.built.mean, self.built.scale))
        return load_data(self.train, normalization=(np.zeros(self.net.input_shape[2], np.float32), 1 / 255))

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Images from `data` as network inputs (a user's model: its `preprocess` of the pixels in [0, 1])."""
        return x if self.built is not None else np.asarray(self.net.preprocess(x), np.float32)

    def photos(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Photos (uint8 HWC, any size) as network inputs: short side resized, center crop, normalized."""
        if self.built is not None:
            return self.built.inputs(images)
        h, _, channels = self.net.input_shape
        return self.inputs(transfer_data.to_input(images, h, channels, scale=1 / 255))

    @property
    def arch(self) -> models.Arch:
        """The built-in architecture (ValueError for a user's model, whose experiment needs one)."""
        if self.built is None:
            raise ValueError(f"this experiment needs a built-in network (it reads its architecture), not the "
                             f"model {self.net.name}")
        return self.built.arch

    def caveat(self) -> str:
        """A sentence for captions when the network has not learned much (random weights, near-chance accuracy)."""
        if self.built is None:
            return ""
        if self.source == RANDOM:
            return "The weights are random (untrained): the figures show the architecture, not learned features."
        classes = self.built.arch.num_classes
        if self.built.top1 is not None and self.built.top1 < 2.0 / classes:
            return (f"This network is barely trained (test top-1 {100 * self.built.top1:.1f}%, chance is "
                    f"{100 / classes:.1f}%): expect little structure.")
        return ""

    def layers(self, wanted: Sequence) -> list[str]:
        """The layer names of `wanted`: names as they are; numbers are the paper's layers (built-in nets:
        `zfjax.network.models.Arch.paper_layer`; a user's model: its maps then its vectors, 1 the first, 7 the last);
        empty: the network's own (a built-in net's conv layers, a user's model's listed maps)."""
        if not wanted:
            convs = [c.name for c in self.built.arch.convs] if self.built is not None else list(self.net.layers)
            return convs
        ordered = list(self.net.layers) + list(self.net.vectors)
        out = []
        for w in wanted:
            if isinstance(w, str):
                self.net.features(w)  # names an unknown layer and the layers there are
                out.append(w)
            elif self.built is not None:
                out.append(self.built.arch.paper_layer(int(w)))
            else:
                out.append(ordered[round((min(max(int(w), 1), 7) - 1) / 6 * (len(ordered) - 1))])
        return out

    def class_names(self, config: Any) -> list[str]:
        """One name per class: the model's own, Fashion-MNIST's, ``config.class_names``, else "class k"."""
        names = tuple(self.net.class_names) or (fashion_mnist.CLASSES if self.train.dataset == "fashion_mnist"
                                                else tuple(config.get("class_names", ())))
        return [names[k] if k < len(names) else f"class {k}" for k in range(self.net.num_classes())]

    def describe(self) -> str:
        """The network for captions: ``<name> from <source>``."""
        return f"{self.net.name} from {self.source}"


def load(config: Any) -> Subject:
    """The network of a `experiments.configs.visual` config, from the first source field that is set (`SOURCES`):
    ``model``, ``checkpoint``, ``weights`` or ``random_init``; ValueError when none is."""
    for field, source in SOURCES:
        if config.get(field):
            return source(config)
    raise ValueError("no network: set --config.checkpoint=<workdir of a train_imagenet run>, "
                     "--config.weights=<.safetensors/.pth file> or --config.model=<package.module:function>")


def _built(config: Any, net: trained.Net) -> Subject:
    return Subject(network.from_arch(net.arch, net.params, net.mean, net.scale), net.source, config.train, net)


def from_model(config: Any) -> Subject:
    """A user's model (`zfjax.network.load`); ValueError when the preset's data does not fit its input."""
    net = network.load(config.model)
    want = data_info(config.train)
    if tuple(net.input_shape) != tuple(want.input_shape):
        raise ValueError(f"model {config.model} takes {tuple(net.input_shape)} images, but the preset's data "
                         f"({want.name}) gives {tuple(want.input_shape)}: choose the preset of the model's data")
    return Subject(net, config.model, config.train)


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
    """Imported weights (`zfjax.network.weights`): torchvision's layout is torchvision's AlexNet, any other the preset's
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
SOURCES: tuple[tuple[str, Callable[[Any], Subject]], ...] = (
    ("model", from_model), ("checkpoint", lambda c: _built(c, from_checkpoint(c))),
    ("weights", lambda c: _built(c, from_weights(c))), ("random_init", lambda c: _built(c, random_net(c))))


def _view(crops: np.ndarray, axis: int = 0) -> np.ndarray:
    """The one view of evaluated examples the figures use: the center crop of 10 (ImageNet), or the only one."""
    return np.take(crops, 4 if crops.shape[axis] == 10 else 0, axis=axis)


def subset(source: Any, n: int) -> Any:
    """The first `n` examples of `source` (all when n is 0 or larger than it)."""
    return pipeline.Subset(source, n) if 0 < n < len(source) else source


def batches(subject: Subject, source: Any, batch_size: int, num_threads: int) -> Iterator[tuple[np.ndarray,
                                                                                               np.ndarray]]:
    """(network inputs, dataset indices) of every example of `source` once, in order, with a progress bar."""
    from tqdm import tqdm
    seen = 0
    with tqdm(total=len(source), unit="img", leave=False, mininterval=1.0, file=sys.stderr) as bar:
        for b in pipeline.eval_batches(source, subject.data.eval_transform, global_batch=batch_size,
                                       num_threads=num_threads):
            images = subject.inputs(_view(b["image"][b["mask"] > 0], axis=1))
            yield images, np.arange(seen, seen + len(images))
            seen += len(images)
            bar.update(len(images))


def images(subject: Subject, source: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """indices -> (network inputs, the images as shown in [0, 1]) of those examples of `source`."""
    def get(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = subject.inputs(np.stack([_view(subject.data.eval_transform(source[int(i)])["image"]) for i in indices]))
        return x, subject.net.to_display(x)
    return get


def pick_maps(top_values: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` feature maps drawn at random (seeded) among those whose strongest activation is positive, sorted."""
    alive = np.flatnonzero(top_values > 0)
    if not len(alive):
        raise ValueError("no feature map of this layer fires on any image: is the network trained?")
    return np.sort(np.random.default_rng(seed).choice(alive, min(n, len(alive)), replace=False))


from experiments.cli import main  # noqa: E402  (re-exported: the experiment scripts call subject.main)

__all__ = ["Subject", "SOURCES", "load", "from_model", "from_checkpoint", "from_weights", "random_net", "subset",
           "batches", "images", "pick_maps", "main"]
