"""The images and class names the analysis experiments (invariance, occlusion, correspondence) use with a network
of `experiments.visual.load_net` (its config fields: `experiments.configs.visual`).

``config.images``: ``"eval"`` (the network's evaluation split, e.g. the Fashion-MNIST test set: ``config.indices``
picks the examples, labels from the data), ``"skimage:chelsea,coffee"`` (photos bundled with scikit-image) or
``"files:a.jpg,b.png"``, with their class ids in ``config.labels``; photos are resized (short side) and
center-cropped to the network's input. ``config.class_names`` names classes of datasets that carry no names.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from experiments import visual
from zfjax import visualize
from zfjax.data import fashion_mnist, transfer as transfer_data


def add_fields(c: Any) -> Any:
    """Add the image fields (module docstring) to a `experiments.configs.visual` config `c`."""
    c.images = "eval"
    c.indices = ()
    c.labels = ()
    c.class_names = ()
    return c


def class_names(config: Any, net: visual.Net) -> list[str]:
    """One name per class of the network (Fashion-MNIST's, ``config.class_names``, else "class k")."""
    names = fashion_mnist.CLASSES if net.data.name == "fashion_mnist" else tuple(config.class_names)
    return [names[k] if k < len(names) else f"class {k}" for k in range(net.arch.num_classes)]


def load_images(config: Any, net: visual.Net) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, H, W, C) float in the network's input space, labels (N,) int32) of ``config``."""
    if config.images == "eval":
        indices = np.asarray(config.indices, int)
        x, _ = visual.images(net, net.data.eval)(indices)
        labels = np.array([net.data.eval[int(i)]["label"] for i in indices])
    else:
        kind, _, names = config.images.partition(":")
        if kind == "skimage":
            import skimage.data
            raw = [getattr(skimage.data, n)() for n in names.split(",")]
        elif kind == "files":
            raw = [transfer_data.read_image(p) for p in names.split(",")]
        else:
            raise ValueError(f"unknown images {config.images!r}: use 'eval', 'skimage:<names>' or 'files:<paths>'")
        labels = np.asarray(config.labels)
        if labels.shape != (len(raw),):
            raise ValueError(f"images {config.images!r} need one label each in config.labels, got "
                             f"{list(config.labels)}")
        h, _, channels = net.arch.input_shape
        mean = net.mean.reshape(-1, channels).mean(0) if net.mean.ndim == 3 else net.mean
        x = transfer_data.to_input(raw, h, channels, mean=mean, scale=net.scale)
    if not len(x):
        raise ValueError("no images selected: set config.indices (or config.images)")
    if labels.min() < 0 or labels.max() >= net.arch.num_classes:
        raise ValueError(f"labels {labels.tolist()} out of range for {net.arch.num_classes} classes")
    return x, labels.astype(np.int32)


def display(x: np.ndarray, net: visual.Net) -> np.ndarray:
    """Network inputs back to pixels in [0, 1] for figures."""
    return visualize.to_display(x, net.mean, net.scale)
