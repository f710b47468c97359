"""ImageNet 2012 through TFDS (``imagenet2012``, manual download) with the paper's preprocessing.

Section 3 of the paper: resize the short side to 256, crop the center 256x256, subtract the per-pixel mean over the
training set; train on random 224x224 crops with horizontal flips, evaluate on 10 crops (4 corners + center, each
also flipped) with averaged softmax. Pixel values stay in [0, 255] minus the mean (the paper's filter radius 0.1
assumes inputs of roughly +-128).
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
from PIL import Image

TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
NUM_CLASSES = 1000


def manual_dir(data_dir: str | pathlib.Path) -> pathlib.Path:
    """Where the ILSVRC2012 tars must be placed: ``<data_dir>/downloads/manual``."""
    return pathlib.Path(data_dir).expanduser() / "downloads" / "manual"


def missing_message(data_dir: str | pathlib.Path) -> str:
    where = manual_dir(data_dir)
    return (f"ImageNet 2012 is not prepared in {data_dir}. Download {TARS[0]} (138 GB) and {TARS[1]} (6.3 GB) from "
            f"https://image-net.org/download-images (registration needed) and put them in {where}/, i.e. "
            f"{where / TARS[0]} and {where / TARS[1]}; the first run then converts them (hours, once). Or point "
            f"the config's data_dir at a TFDS data dir that already holds imagenet2012 (train_imagenet: "
            f"--config.data_dir=..., the other experiments: --config.train.data_dir=...).")


def sources(data_dir: str | pathlib.Path) -> tuple[Any, Any]:
    """(train, validation) random-access TFDS sources; prepares the dataset from the manual tars on first use.

    When it is not prepared in `data_dir` and the tars are not there either, preparing could only fail: that is a
    FileNotFoundError before TFDS creates folders or logs a download. (TFDS's test mocks move the builder's
    data_dir elsewhere, so they still reach their mocked preparation.)
    """
    import tensorflow_datasets as tfds  # heavy: imported only when ImageNet is used

    data_dir = pathlib.Path(data_dir).expanduser()
    builder = tfds.builder("imagenet2012", data_dir=str(data_dir), file_format="array_record")
    tars = all((manual_dir(data_dir) / t).is_file() for t in TARS)
    if not tars and not builder.is_prepared() and pathlib.Path(builder.data_dir).is_relative_to(data_dir):
        raise FileNotFoundError(missing_message(data_dir))
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir(data_dir))))
    except Exception as e:  # noqa: BLE001 - tfds raises assorted types for missing manual files
        if not tars:
            raise FileNotFoundError(missing_message(data_dir)) from e
        raise
    return builder.as_data_source("train"), builder.as_data_source("validation")


def resize_center(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Short side to `size` (bilinear, antialiased), then the center `size` x `size` crop; uint8 HxWx3 in and out."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top:top + size, left:left + size]


def random_crop_flip(image: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A random `crop` x `crop` window, flipped left-right with probability 1/2."""
    h, w = image.shape[:2]
    top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    out = image[top:top + crop, left:left + crop]
    return out[:, ::-1] if rng.random() < 0.5 else out


def ten_crops(image: np.ndarray, crop: int) -> np.ndarray:
    """(10, crop, crop, C): top-left, top-right, bottom-left, bottom-right, center, then the same five flipped."""
    h, w = image.shape[:2]
    corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), ((h - crop) // 2, (w - crop) // 2)]
    five = np.stack([image[t:t + crop, l:l + crop] for t, l in corners])
    return np.concatenate([five, five[:, :, ::-1]])
