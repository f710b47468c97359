"""Training the worked example of a user's own model (`experiments.flax_resnet`): a small Flax ResNet on the
embedded Fashion-MNIST.

    python -m experiments.flax_resnet --config=experiments/configs/flax_resnet.py --workdir=runs/flax_resnet

Presets: default (3 epochs of 20,000 training images, about 4 minutes on 2 CPU cores), ``tiny`` (one epoch of
1,024 images: seconds, for tests). Fields: ``epochs``, ``train_subset`` (0 = all 60,000), ``batch_size``,
``learning_rate`` (SGD with momentum 0.9, cosine decay to 0), ``seed``, ``data_dir`` ("" = Debian's folder).
"""
import ml_collections


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    if arg not in ("default", "tiny"):
        raise ValueError(f"unknown preset {arg!r}; choose one of ['default', 'tiny']")
    c = ml_collections.ConfigDict()
    c.epochs = 3 if arg == "default" else 1
    c.train_subset = 20000 if arg == "default" else 1024
    c.batch_size = 128
    c.learning_rate = 0.1
    c.seed = 0
    c.data_dir = ""
    return c
