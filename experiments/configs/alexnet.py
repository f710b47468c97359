"""Krizhevsky's single-tower AlexNet (conv1 11x11/4), Table 2's "replication" row, with the same recipe as ZFNet.

    python -m experiments.train_imagenet --config=experiments/configs/alexnet.py --workdir=runs/alexnet
"""
from experiments.configs import default


def get_config():
    c = default.get_config()
    c.model = "alexnet"
    return c
