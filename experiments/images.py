"""The images the analysis experiments (invariance, occlusion, correspondence) feed the network of a `Subject`
(its config fields: `experiments.configs.visual`).

``config.images``: ``"eval"`` (the network's evaluation split, e.g. the Fashion-MNIST test set: ``config.indices``
picks the examples, labels from the data), ``"skimage:chelsea,coffee"`` (photos bundled with scikit-image) or
``"files:a.jpg,b.png"``, with their class ids in ``config.labels``; photos are resized (short side) and
center-cropped to the network's input. ``config.class_names`` names classes of datasets that carry no names.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from experiments import subject as subject_lib
from experiments.subject import Subject
from zfjax.data import transfer as transfer_data


def add_fields(c: Any) -> Any:
    """Add the image fields (module docstring) to a `experiments.configs.visual` config `c`."""
    c.images = "eval"
    c.indices = ()
    c.labels = ()
    c.class_names = ()
    return c


def load(config: Any, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, H, W, C) float in the network's input space, labels (N,) int32) of ``config``. Photos need no
    dataset: they are normalized as the network's inputs (`Subject.photos`)."""
    if config.images == "eval":
        x, labels = _eval_images(config, subject)
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
        x = subject.photos(raw)
    classes = subject.net.num_classes()
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels {labels.tolist()} out of range for {classes} classes")
    return x, labels.astype(np.int32)


def _eval_images(config: Any, subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """The ``config.indices`` examples of the network's evaluation split, and their labels."""
    indices = np.asarray(config.indices, int)
    if not len(indices):
        raise ValueError("no images selected: set config.indices (or config.images)")
    size = len(subject.data.eval)
    bad = indices[(indices < 0) | (indices >= size)]
    if len(bad):
        raise ValueError(f"indices {bad.tolist()} are out of range: the evaluation split of {subject.data.name} has "
                         f"{size} images (0..{size - 1})")
    x, _ = subject_lib.images(subject, subject.data.eval)(indices)
    return x, np.array([subject.data.eval[int(i)]["label"] for i in indices])


def _skimage(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos (``skimage.data.<name>()``)."""
    import skimage.data
    if name not in skimage.data.__all__ or name in ("data_dir", "download_all", "file_hash") or name.startswith("lbp"):
        raise ValueError(f"unknown skimage image {name!r}; e.g. astronaut, chelsea, coffee, camera, rocket")
    return getattr(skimage.data, name)()
