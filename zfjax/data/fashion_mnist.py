"""Fashion-MNIST from the original IDX ``.gz`` files (Debian's ``dataset-fashion-mnist``), read with numpy.

TFDS's ``fashion_mnist`` builder rejects the Debian files (they are recompressed, so checksums differ); the IDX
format is four lines of numpy, so no download or TFDS is needed.
"""
from __future__ import annotations

import gzip
import pathlib

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; only the unsigned-byte type (0x08) is accepted."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()}, want 000008..)")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, 4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but has {body.size} bytes")
    return body.reshape(dims)


def load(split: str, data_dir: str | pathlib.Path = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28, 1), labels int32 (N,)) of split ``"train"`` (60k) or ``"test"`` (10k)."""
    if split not in FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; choose one of {sorted(FILES)}")
    paths = [pathlib.Path(data_dir) / name for name in FILES[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST files missing: {missing}. Install them with "
                                f"'sudo apt-get install dataset-fashion-mnist' (puts them in {DEFAULT_DIR}) or "
                                f"set --config.data_dir to the folder holding the four IDX .gz files")
    images, labels = (read_idx(p) for p in paths)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{paths[0]} has {images.shape[0]} images but {paths[1]} has {labels.shape[0]} labels")
    return images[..., None], labels.astype(np.int32)
