"""Table 3: train a list of architecture variants from one base training config; train/val top-1 and val top-5.

    python -m experiments.ablations --config=experiments/configs/ablations.py:fmnist --workdir=runs/ablations
    python -m experiments.ablations --config=experiments/configs/ablations.py:imagenet --workdir=runs/ablations_in

Arguments: ``fmnist`` (embedded: the small net on 8,000 Fashion-MNIST training images for 2 epochs per variant,
5,000 test images; about 20 minutes for the 7 variants on 2 shared CPU cores), ``imagenet`` (the paper's: ZFNet's
ImageNet config), ``tiny`` (tests). Variants are ``experiments/configs/ablation.py``'s (layers removed or
resized) plus ``extra_variants``; ``scale_from`` names the net their widths were written for (``zfnet``): on another base net a resize becomes the
same ratio of that net's widths (fc6/fc7 8192 vs 4096 -> 512 vs 256 on the small net); "" applies them as written.
``train_eval_subset`` training images give the train top-1 (evaluated without dropout, like the val columns).
"""
import ml_collections

from experiments.configs import default, fashion_mnist, tiny

# The rows the paper reports or describes (no_fc7 and fc2048 are in ablation.py too: add them with --config.variants).
_PAPER_SET = ("base", "no_fc67", "no_conv34", "no_conv34_fc67", "fc8192", "conv345_wide")


def get_config(arg: str = "fmnist") -> ml_collections.ConfigDict:
    if arg not in ("fmnist", "imagenet", "tiny"):
        raise ValueError(f"ablations config {arg!r}: use fmnist, imagenet or tiny")
    c = ml_collections.ConfigDict()
    c.base = {"fmnist": fashion_mnist.get_config, "imagenet": default.get_config, "tiny": tiny.get_config}[arg]()
    c.scale_from = "zfnet"
    c.variants = _PAPER_SET + ("conv1_large_stride",)
    c.train_eval_subset = 10000
    if arg == "imagenet":
        c.extra_variants = {"conv1_large_stride": {"remove": (), "overrides": {
            "conv1": {"kernel": 11, "stride": 4, "padding": 2}}}}  # Krizhevsky's 11x11/4 vs ZFNet's 7x7/2
    else:  # the small net's conv1 is 5x5/1: the analog of 7x7/2 -> 11x11/4 is a larger kernel with stride 2
        c.extra_variants = {"conv1_large_stride": {"remove": (), "overrides": {
            "conv1": {"kernel": 9, "stride": 2, "padding": 4}}}}
    if arg == "fmnist":
        c.base.train_subset = 8000
        c.base.eval_subset = 5000
        c.base.num_epochs = 2
        c.base.eval_every_steps = 10**9  # evaluate once, at the end
        c.train_eval_subset = 5000
        c.base.lr_decay_epochs = (1.5,)
        c.base.snapshot_epochs = ()
        c.base.checkpoint_every_steps = 100
    if arg == "tiny":
        c.variants = ("base", "no_conv34_fc67", "fc8192")
        c.base.num_epochs = 1
        c.base.snapshot_epochs = ()
        c.train_eval_subset = 128
    return c
