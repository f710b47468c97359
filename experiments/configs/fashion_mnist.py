"""The embedded default: the "small" ZF-style net (5 conv + 2 fc, LCN, switch pooling) on Fashion-MNIST.

Trains on a 2-core CPU to >= 90% test accuracy in a few minutes (see the README for the measured time):

    python -m experiments.train_imagenet --config=experiments/configs/fashion_mnist.py --workdir=runs/fmnist

Differences from the paper's recipe, because the images are 28x28 grey: He (fan-in) init, inputs scaled to
[0, 1] minus the mean, no crops or flips, a fixed step decay instead of plateau annealing, snapshots every epoch.
"""
from experiments.configs import default


def get_config():
    c = default.get_config()
    c.dataset = "fashion_mnist"
    c.model = "small"
    c.init = "fan_in"
    c.pixel_scale = 1 / 255
    c.num_data_threads = 2
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.learning_rate = 0.02
    c.lr_schedule = "step"
    c.lr_decay_epochs = (3,)
    c.num_epochs = 4
    c.checkpoint_every_steps = 200
    c.log_every_steps = 50
    c.snapshot_epochs = (1, 2, 3, 4)
    return c
