"""Datasets of the transfer experiments (Tables 4-7): Caltech-101 (TFDS), Caltech-256 (image folder), PASCAL VOC
2012 (TFDS, multi-label), the embedded analog (scikit-learn's bundled digits), per-class splits and de-duplication.

Every loader returns a `Labelled`: a random-access sequence of images (decoded on access, uint8 HWC), integer labels
(or multi-hot rows for VOC) and the class names. `to_input` resizes and normalizes a batch of them for a network.
"""
from __future__ import annotations

import hashlib
import pathlib
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from zfjax.data import imagenet

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


class Labelled(NamedTuple):
    """Images (``images[i]`` -> uint8 HWC array), labels (N,) or multi-hot (N, C), class names."""
    images: Any
    labels: np.ndarray
    classes: tuple[str, ...]


class _Lazy:
    """A sequence that applies `load` to `items[i]` on access (decoding images only when needed)."""

    def __init__(self, items: Sequence[Any], load: Callable[[Any], np.ndarray]):
        self.items, self.load = items, load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.load(self.items[i])


def read_image(path: str | pathlib.Path) -> np.ndarray:
    """Decode an image file to uint8 RGB HWC as it is meant to be seen: EXIF orientation applied, 16-bit values
    scaled by their bit depth (not clipped), palettes looked up, transparency composited over white, grey repeated
    into three channels. No file: FileNotFoundError; a corrupt, truncated or unsupported one: ValueError naming it."""
    from PIL import Image, ImageOps
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with Image.open(path) as im:
            return _rgb8(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


_WIDE_GREY = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}  # mode -> full scale


def _rgb8(im) -> np.ndarray:
    """A decoded PIL image as uint8 RGB (see `read_image`); 32-bit integer grey ("I") is read as 16-bit data."""
    if im.mode in _WIDE_GREY:
        grey = np.clip(np.asarray(im, np.float64) / _WIDE_GREY[im.mode], 0.0, 1.0)
        return np.repeat(np.round(255.0 * grey).astype(np.uint8)[..., None], 3, axis=2)
    if im.mode == "F":
        raise ValueError("32-bit float images have no defined range: save it as 8- or 16-bit")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), np.float64)
        alpha = rgba[..., 3:] / 255.0
        return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def image_folder(root: str | pathlib.Path, *, exclude: Sequence[str] = ("257.clutter",)) -> Labelled:
    """A class-per-folder image tree, e.g. Caltech-256's ``256_ObjectCategories/NNN.name/*.jpg``.

    Classes are the sub-folders in sorted order, minus `exclude` (Caltech-256's clutter class by default).
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"no image folder at {root}. For Caltech-256, download 256_ObjectCategories.tar (Griffin, Holub & "
            f"Perona, Caltech) and unpack it so that {root}/001.ak47/001_0001.jpg exists")
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name not in exclude]
    paths, labels = [], []
    for label, d in enumerate(dirs):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root} has no images in class folders ({', '.join(IMAGE_SUFFIXES)})")
    classes = tuple(d.name.split(".", 1)[-1] for d in dirs)
    return Labelled(_Lazy(paths, read_image), np.asarray(labels, np.int32), classes)


def _tfds_source(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)  # no network: fail fast
    except Exception as e:  # noqa: BLE001 - tfds raises several types for "not prepared"
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared (in the random-access array_record format) in "
            f"{data_dir or '~/tensorflow_datasets'}. On a machine with internet run: python -c \"import "
            f"tensorflow_datasets as tfds; tfds.data_source('{name}', split='{split}', "
            f"data_dir='{data_dir or '~/tensorflow_datasets'}')\" and copy that folder here. ({type(e).__name__})") from e


class _Concat:
    """Random access over several sources, one after the other."""

    def __init__(self, sources: Sequence[Any]):
        self.sources = sources
        self.ends = np.cumsum([len(s) for s in sources])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i: int):
        k = int(np.searchsorted(self.ends, i, side="right"))
        return self.sources[k][int(i - (self.ends[k - 1] if k else 0))]


def caltech101(data_dir: str | None = None, *, background: bool = False) -> Labelled:
    """All images of TFDS ``caltech101`` (train and test pooled: the paper re-samples per class).

    The ``BACKGROUND_Google`` class is dropped unless `background` (the 101 object classes are the usual protocol).
    """
    import tensorflow_datasets as tfds
    source = _Concat([_tfds_source("caltech101", s, data_dir) for s in ("train", "test")])
    names = tfds.builder("caltech101", data_dir=data_dir).info.features["label"].names
    labels = np.asarray([int(source[i]["label"]) for i in range(len(source))], np.int32)
    keep_classes = [c for c, n in enumerate(names) if background or n.lower() != "background_google"]
    keep = np.flatnonzero(np.isin(labels, keep_classes))
    remap = {c: j for j, c in enumerate(keep_classes)}
    return Labelled(_Lazy([int(i) for i in keep], lambda i: np.asarray(source[i]["image"])),
                    np.asarray([remap[int(c)] for c in labels[keep]], np.int32),
                    tuple(names[c] for c in keep_classes))


def voc2012(split: str, data_dir: str | None = None) -> Labelled:
    """TFDS ``voc/2012`` as multi-label classification: multi-hot rows of the 20 classes present in each image.

    The test split has no labels: train on ``train``, report on ``validation`` (the paper used the test server).
    """
    if split not in ("train", "validation"):
        raise ValueError(f"voc/2012 split {split!r}: use 'train' or 'validation' (test has no labels)")
    import tensorflow_datasets as tfds
    source = _tfds_source("voc/2012", split, data_dir)
    names = tuple(tfds.builder("voc/2012", data_dir=data_dir).info.features["objects"]["label"].names)
    multi_hot = np.zeros((len(source), len(names)), np.int32)
    for i in range(len(source)):
        multi_hot[i, np.asarray(source[i]["objects"]["label"], np.int64)] = 1
    return Labelled(_Lazy(range(len(source)), lambda i: np.asarray(source[i]["image"])), multi_hot, names)


def digits() -> Labelled:
    """scikit-learn's bundled handwritten digits (1797 8x8 grey images, 10 classes) as uint8 HWC."""
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return Labelled(images, d.target.astype(np.int32), tuple(str(c) for c in d.target_names))


def per_class_split(labels: np.ndarray, n_train: int, *, max_test: int | None, seed: int) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """Random `n_train` indices per class for training, and up to `max_test` of the rest per class for testing.

    Classes with no more than `n_train` images give all of them to training and none to testing (said in the
    experiment's output). Index arrays are sorted, deterministic in `seed`.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:n_train])
        test.append(idx[n_train:] if max_test is None else idx[n_train:n_train + max_test])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def image_hash(image: np.ndarray) -> str:
    """SHA-1 of an image's decoded pixels and shape: equal images, however they were encoded, hash equal."""
    image = np.ascontiguousarray(image)
    return hashlib.sha1(str(image.shape).encode() + image.tobytes()).hexdigest()


def drop_duplicates(data: Labelled, hashes: set[str] | Sequence[str]) -> tuple[Labelled, int]:
    """Remove the images whose `image_hash` is in `hashes` (e.g. those also in the pre-training set).

    Returns the kept dataset and how many images were dropped.
    """
    hashes = set(hashes)
    keep = [i for i in range(len(data.images)) if image_hash(data.images[i]) not in hashes]
    items = [data.images[i] for i in keep] if isinstance(data.images, np.ndarray) else None
    images = np.stack(items) if items is not None else _Lazy([data.images.items[i] for i in keep], data.images.load)
    return Labelled(images, data.labels[keep], data.classes), len(data.labels) - len(keep)


def to_input(images: Sequence[np.ndarray], size: int, channels: int, mean: float | np.ndarray = 0.0,
             scale: float = 1.0) -> np.ndarray:
    """Short side to `size`, center crop (`imagenet.resize_center`), match `channels`, then ``(pixel - mean) *
    scale`` as float32 NHWC: the input space of the pre-trained network."""
    out = np.empty((len(images), size, size, channels), np.float32)
    for k, im in enumerate(images):
        im = np.asarray(im, np.uint8)
        im = np.repeat(im.reshape(im.shape[:2] + (-1,))[..., :1], 3, axis=2) if im.ndim == 2 or im.shape[2] == 1 \
            else im[..., :3]
        im = imagenet.resize_center(im, size).astype(np.float32)
        out[k] = ((im.mean(axis=2, keepdims=True) if channels == 1 else im) - mean) * scale
    return out


SINGLE_LABEL = ("digits", "caltech101", "caltech256")


def load(name: str, data_dir: str = "") -> Labelled:
    """A single-label transfer dataset by name (one of `SINGLE_LABEL`); `data_dir` "" means its default folder."""
    if name == "digits":
        return digits()
    if name == "caltech101":
        return caltech101(data_dir or None)
    if name == "caltech256":
        return image_folder(pathlib.Path(data_dir or "~/caltech256/256_ObjectCategories").expanduser())
    raise ValueError(f"unknown dataset {name!r}; choose one of {SINGLE_LABEL}")


def read_hashes(path: str | pathlib.Path) -> set[str]:
    """Image hashes (`image_hash`), one per line, e.g. of the pre-training images."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hash list {path} does not exist (one image_hash per line)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}
