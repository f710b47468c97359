"""ZFNet with 512, 1024, 512 maps in conv3-5: Table 2's best single net (37.5 / 16.0 % val top-1 / top-5 error).

    python -m experiments.train_imagenet --config=experiments/configs/zfnet_b.py --workdir=runs/zfnet_b
"""
from experiments.configs import default


def get_config():
    c = default.get_config()
    c.model = "zfnet_b"
    return c
