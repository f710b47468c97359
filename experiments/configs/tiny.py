"""A seconds-long Fashion-MNIST run for tests and smoke checks: 512 training and 256 test images, narrow layers,
and the paper's dropout 0.5 and filter radius 0.1 (so tests exercise both).

    python -m experiments.train_imagenet --config=experiments/configs/tiny.py --workdir=/tmp/tiny
"""
from experiments.configs import fashion_mnist


def get_config():
    c = fashion_mnist.get_config()
    c.train_subset = 512
    c.eval_subset = 256
    c.batch_size = 32
    c.eval_batch_size = 128
    c.model_overrides = {"conv1": {"features": 8}, "conv2": {"features": 16}, "conv3": {"features": 16},
                         "conv4": {"features": 16}, "conv5": {"features": 16}, "fc6": {"features": 32},
                         "fc7": {"features": 32}}
    c.dropout = 0.5
    c.radius = 0.1
    c.num_epochs = 2
    c.checkpoint_every_steps = 4
    c.log_every_steps = 4
    c.eval_every_steps = 8
    c.snapshot_epochs = (1, 2)
    c.num_data_threads = 1
    return c
