"""The pre-trained net a transfer experiment starts from, and the experiment's inputs (its config's fields).

``config.pretrain`` / ``config.pretrain_workdir`` name a `experiments.train_imagenet` run; with
``config.train_if_missing`` it is trained first when the workdir has no checkpoint.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, NamedTuple

import numpy as np

from experiments.configs import default
from zfjax.data import transfer as transfer_data
from zfjax.training import checkpoints, train, trained


def load(train_config: Any, workdir: str | pathlib.Path, *, train_if_missing: bool) -> trained.Net:
    """The newest checkpoint of the training run in `workdir` as a `zfjax.training.trained.Net` (architecture and input
    normalization as the run recorded them), trained there first with `train_config` when it has none and
    `train_if_missing` (else FileNotFoundError saying how to train it). ValueError for an empty `workdir`."""
    if not str(workdir):
        raise ValueError("no pre-trained network: set --config.pretrain_workdir=<workdir of a train_imagenet run>")
    workdir = pathlib.Path(workdir)
    if not (workdir / checkpoints.CHECKPOINTS).is_dir():
        if not train_if_missing:
            raise FileNotFoundError(f"no trained network in {workdir}: train one with python -m "
                                    f"experiments.train_imagenet --config=<its config> --workdir={workdir}")
        logging.warning("no checkpoint in %s: training the %s net there first (%d epochs; the Fashion-MNIST net "
                        "takes 7-15 min on 2 CPU cores)", workdir, train_config.model, train_config.num_epochs)
        default.check_fields(train_config)
        train.train_and_evaluate(train_config, workdir)
    return trained.load_net(workdir)




class Prepared(NamedTuple):
    """A transfer experiment's inputs: the dataset (de-duplicated), the pre-trained net, and the network inputs."""
    data: transfer_data.Labelled
    net: trained.Net
    x: np.ndarray
    dropped: int


def prepare(config: Any) -> Prepared:
    """Load ``config.dataset`` and the net of ``config.pretrain_workdir``, drop images listed in
    ``config.hashes_file`` (if set), and turn the images into the net's input space."""
    data = transfer_data.load(config.dataset, config.data_dir)
    net = load(config.pretrain, config.pretrain_workdir, train_if_missing=config.train_if_missing)
    dropped = 0
    if config.hashes_file:
        data, dropped = transfer_data.drop_duplicates(data, transfer_data.read_hashes(config.hashes_file))
    return Prepared(data, net, net.inputs([data.images[i] for i in range(len(data.labels))]), dropped)
