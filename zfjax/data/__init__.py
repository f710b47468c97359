"""Input data for training: Fashion-MNIST (embedded, numpy) and ImageNet 2012 (TFDS), one interface.

`load(config)` returns a `Data`: random-access train/eval sources plus the per-example transforms that turn a raw
example into float32 network input (train: augmented, one view; eval: ``(crops, H, W, C)`` views whose softmax is
averaged). `pipeline` turns them into sharded, checkpointable grain iterators.
"""
from __future__ import annotations

import functools
import pathlib
from typing import Any, Callable, NamedTuple

import numpy as np

from zfjax.data import fashion_mnist, imagenet, pipeline

DATASETS = ("fashion_mnist", "imagenet2012")


class Data(NamedTuple):
    """Sources and transforms of one dataset (see module docstring)."""
    name: str
    train: Any
    eval: Any
    num_classes: int
    input_shape: tuple[int, int, int]
    num_crops: int
    train_transform: Callable[[dict, np.random.Generator], dict]
    eval_transform: Callable[[dict], dict]
    mean: np.ndarray | None = None  # the pixel mean the transforms subtract (before scaling): the input space's 0


class Info(NamedTuple):
    """What a network needs to know of its dataset, known without reading it."""
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]


def info(config: Any) -> Info:
    """The `Info` of ``config.dataset`` (the network input is ``image_size`` square for ImageNet)."""
    if config.dataset == "fashion_mnist":
        return Info("fashion_mnist", len(fashion_mnist.CLASSES), (28, 28, 1))
    if config.dataset == "imagenet2012":
        return Info("imagenet2012", imagenet.NUM_CLASSES, (config.image_size, config.image_size, 3))
    raise ValueError(f"unknown dataset {config.dataset!r}; choose one of {DATASETS}")


def load(config: Any, normalization: tuple[np.ndarray, Any] | None = None) -> Data:
    """The dataset named by ``config.dataset``, cut to ``config.train_subset``/``eval_subset`` examples when > 0.

    The transforms compute ``(pixel - mean) * scale`` with the training split's mean and ``config.pixel_scale``,
    or with the given ``normalization=(mean, scale)`` (a trained network's, so that its data is seen as in
    training; the ImageNet mean is then not computed).
    """
    info(config)  # names an unknown dataset
    if config.dataset == "fashion_mnist":
        return _fashion_mnist(config, normalization)
    return _imagenet(config, normalization)


def _cut(source: Any, n: int) -> Any:
    return pipeline.Subset(source, n) if n else source


def _normalize(image: np.ndarray, mean: np.ndarray, scale: float) -> np.ndarray:
    return ((image.astype(np.float32) - mean) * np.float32(scale)).astype(np.float32)


def _whole_train(ex: dict, rng: np.random.Generator, mean: np.ndarray, scale: float) -> dict:
    del rng  # no augmentation for the 28x28 images
    return {"image": _normalize(ex["image"], mean, scale), "label": np.int32(ex["label"])}


def _whole_eval(ex: dict, mean: np.ndarray, scale: float) -> dict:
    return {"image": _normalize(ex["image"], mean, scale)[None], "label": np.int32(ex["label"])}


def _fashion_mnist(config: Any, normalization: tuple[np.ndarray, Any] | None) -> Data:
    data_dir = config.data_dir or fashion_mnist.DEFAULT_DIR
    images, labels = fashion_mnist.load("train", data_dir)
    n = config.train_subset or len(images)
    train = pipeline.ArraySource("fashion_mnist/train", images[:n], labels[:n])
    test = _cut(pipeline.ArraySource("fashion_mnist/test", *fashion_mnist.load("test", data_dir)), config.eval_subset)
    mean, scale = normalization or (train.images.mean(0, dtype=np.float64).astype(np.float32), config.pixel_scale)
    return Data("fashion_mnist", train, test, len(fashion_mnist.CLASSES), (28, 28, 1), 1,
                functools.partial(_whole_train, mean=mean, scale=scale),
                functools.partial(_whole_eval, mean=mean, scale=scale), mean)


def _centered(ex: dict, resize: int) -> np.ndarray:
    return imagenet.resize_center(np.asarray(ex["image"]), resize)


def _imagenet_train(ex: dict, rng: np.random.Generator, mean: np.ndarray, scale: float, resize: int,
                    crop: int) -> dict:
    image = _normalize(_centered(ex, resize), mean, scale)
    return {"image": np.ascontiguousarray(imagenet.random_crop_flip(image, crop, rng)),
            "label": np.int32(ex["label"])}


def _imagenet_eval(ex: dict, mean: np.ndarray, scale: float, resize: int, crop: int) -> dict:
    image = _normalize(_centered(ex, resize), mean, scale)
    return {"image": imagenet.ten_crops(image, crop), "label": np.int32(ex["label"])}


def _imagenet(config: Any, normalization: tuple[np.ndarray, Any] | None) -> Data:
    data_dir = pathlib.Path(config.data_dir or "~/tensorflow_datasets").expanduser()
    resize, crop = config.resize_size, config.image_size
    if crop > resize:
        raise ValueError(f"image_size {crop} must not exceed resize_size {resize}")
    train, validation = imagenet.sources(data_dir)
    train, validation = _cut(train, config.train_subset), _cut(validation, config.eval_subset)
    mean, scale = normalization or (
        pipeline.pixel_mean(train, functools.partial(_centered, resize=resize),
                            data_dir / "imagenet2012" / f"pixel_mean_{resize}_n{len(train)}.npy"), config.pixel_scale)
    kw = dict(mean=mean, scale=scale, resize=resize, crop=crop)
    return Data("imagenet2012", train, validation, imagenet.NUM_CLASSES, (crop, crop, 3), 10,
                functools.partial(_imagenet_train, **kw), functools.partial(_imagenet_eval, **kw), mean)
