"""ZFNet (Fig. 3) on ImageNet 2012 with the paper's recipe: batch 128, SGD lr 1e-2, momentum 0.9, dropout 0.5,
70 epochs, filter radius 0.1, N(0, 1e-2) init, learning rate cut 10x on plateau.

    python -m experiments.train_imagenet --config=experiments/configs/zfnet.py --workdir=runs/zfnet \
        --config.data_dir=~/tensorflow_datasets

The ILSVRC2012 train/val tars go in ``<data_dir>/downloads/manual/`` (the first run converts them).
"""
from experiments.configs import default


def get_config():
    return default.get_config()
