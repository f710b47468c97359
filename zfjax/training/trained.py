"""A trained network as one value: its architecture, parameters and the input normalization it was trained with.

`load_net(workdir)` reads a training run (or a workdir of imported weights) with no config in hand: the
architecture and normalization come from the workdir's network record (``network.json``, written by `zfjax.training.train`
and `experiments.import_weights`, see `zfjax.training.checkpoints.save_network`). A run from before records existed is read
through the training config its checkpoints store (that path needs the dataset, for the pixel mean). Imported
weights take their normalization as an argument (`TORCHVISION` for torchvision's weights).

Normalization is always ``(pixel - mean) * scale`` with pixels in [0, 255]; `mean` is per pixel (H, W, C) or per
channel (C,), `scale` a number or one per channel.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

import ml_collections
import numpy as np

from zfjax.data import load as load_data
from zfjax.data import transfer as transfer_data
from zfjax.network import models
from zfjax.training import checkpoints, metrics, train

# torchvision's ImageNet normalization, (pixel / 255 - m) / s, written as (pixel - 255 m) * 1 / (255 s).
TORCHVISION = (255.0 * np.array([0.485, 0.456, 0.406], np.float32),
               1.0 / (255.0 * np.array([0.229, 0.224, 0.225], np.float32)))


@dataclasses.dataclass(frozen=True, eq=False)
class Net:
    """A network and what it needs to be used: `source` says where the weights came from (for captions), `step`
    the checkpoint step, `dataset` the data it was trained on ("" when unknown) and `top1` the last test top-1
    accuracy its training run logged (None when unknown)."""
    arch: models.Arch
    params: models.Params
    mean: np.ndarray
    scale: Any
    source: str
    step: int | None = None
    dataset: str = ""
    top1: float | None = None

    def inputs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images (uint8 HWC, any size) as this network's float input: short side resized, center crop, normalized
        (by the per-pixel mean where it has the input's shape, else by its per-channel average)."""
        h, _, channels = self.arch.input_shape
        mean = self.mean if self.mean.shape == self.arch.input_shape else self.mean.reshape(-1, channels).mean(0)
        return transfer_data.to_input(images, h, channels, mean=mean, scale=self.scale)


def load_net(workdir: str | pathlib.Path) -> Net:
    """The newest readable checkpoint of `workdir` as a `Net` (see the module docstring).

    FileNotFoundError when `workdir` holds no checkpoint; ValueError when it records no network (neither
    ``network.json`` nor a training config) or the parameters do not fit the recorded architecture.
    """
    workdir = pathlib.Path(workdir)
    step, params = checkpoints.latest(workdir)
    record = checkpoints.read_network(workdir) or _record_from_config(workdir)
    models.check_params(record.arch, params)
    return Net(record.arch, params, np.asarray(record.mean, np.float32), record.scale, f"{workdir} (step {step})",
               step, record.dataset, metrics.final(workdir / metrics.METRICS_FILE, "eval_top1"))


def _record_from_config(workdir: pathlib.Path) -> checkpoints.NetworkRecord:
    """The record of a run from before ``network.json``: its stored training config, read with its dataset."""
    meta = checkpoints.latest_meta(workdir)
    if "config" not in meta:
        raise ValueError(f"{workdir} records no network: it has no {checkpoints.NETWORK_FILE} and its checkpoints "
                         f"hold no training config. Re-import the weights with python -m experiments.import_weights "
                         f"--normalization=... (which records the network), or train with experiments.train_imagenet")
    config = ml_collections.ConfigDict(meta["config"])
    data = load_data(config)
    return checkpoints.NetworkRecord(train.build_arch(config, data), data.mean, np.float32(config.pixel_scale),
                                     data.name)


def normalization(spec: str, channels: int, scale: float = 1.0) -> tuple[np.ndarray, Any]:
    """(mean, scale) of a normalization spec: ``"torchvision"`` (`TORCHVISION`), or the per-channel mean pixel
    values ``"123.7,116.3,103.5"`` (one per channel, or one for all) with `scale`. ValueError for anything else."""
    if spec == "torchvision":
        if channels != 3:
            raise ValueError(f"torchvision's normalization is for RGB inputs, this network has {channels} channels")
        return TORCHVISION
    try:
        mean = np.array([float(v) for v in spec.split(",")], np.float32)
    except ValueError:
        raise ValueError(f"unknown normalization {spec!r}: use 'torchvision' or the mean pixel value of each "
                         f"channel in 0..255, e.g. '123.7,116.3,103.5'") from None
    if len(mean) not in (1, channels):
        raise ValueError(f"normalization {spec!r} has {len(mean)} values; this network has {channels} channels")
    return np.broadcast_to(mean, (channels,)).copy(), np.float32(scale)
