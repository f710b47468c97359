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
    names = fashion_mnist.CLASSES if net.train.dataset == "fashion_mnist" else tuple(config.class_names)
    return [names[k] if k < len(names) else f"class {k}" for k in range(net.arch.num_classes)]


def load_images(config: Any, net: visual.Net) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, H, W, C) float in the network's input space, labels (N,) int32) of ``config``. Photos need no
    dataset: they are normalized as the network's inputs (`zfjax.trained.Net.inputs`)."""
    if config.images == "eval":
        x, labels = _eval_images(config, net)
    else:
        kind, _, names = config.images.partition(":")
        if kind == "skimage":
            raw = [_skimage(n) for n in names.split(",")]
        elif kind == "files":
            raw = [transfer_data.read_image(p) for p in names.split(",")]
        else:
            raise ValueError(f"unknown images {config.images!r}: use 'eval', 'skimage:<names>' or 'files:<paths>'")
        labels = np.asarray(config.labels)
        if labels.shape != (len(raw),):
            raise ValueError(f"images {config.images!r} need one label each in config.labels, got "
                             f"{list(config.labels)}")
        x = net.inputs(raw)
    if labels.min() < 0 or labels.max() >= net.arch.num_classes:
        raise ValueError(f"labels {labels.tolist()} out of range for {net.arch.num_classes} classes")
    return x, labels.astype(np.int32)


def _eval_images(config: Any, net: visual.Net) -> tuple[np.ndarray, np.ndarray]:
    """The ``config.indices`` examples of the network's evaluation split, and their labels."""
    indices = np.asarray(config.indices, int)
    if not len(indices):
        raise ValueError("no images selected: set config.indices (or config.images)")
    size = len(net.data.eval)
    bad = indices[(indices < 0) | (indices >= size)]
    if len(bad):
        raise ValueError(f"indices {bad.tolist()} are out of range: the evaluation split of {net.data.name} has "
                         f"{size} images (0..{size - 1})")
    x, _ = visual.images(net, net.data.eval)(indices)
    return x, np.array([net.data.eval[int(i)]["label"] for i in indices])


def _skimage(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos (``skimage.data.<name>()``)."""
    import skimage.data
    if name not in skimage.data.__all__ or name in ("data_dir", "download_all", "file_hash") or name.startswith("lbp"):
        raise ValueError(f"unknown skimage image {name!r}; e.g. astronaut, chelsea, coffee, camera, rocket")
    return getattr(skimage.data, name)()


def display(x: np.ndarray, net: visual.Net) -> np.ndarray:
    """Network inputs back to pixels in [0, 1] for figures."""
    return visualize.to_display(x, net.mean, net.scale)
