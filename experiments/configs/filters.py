"""Fig. 6: first-layer filters, their frequency content, and second-layer top-9 projections of two nets that
differ only in conv1's kernel and stride, trained alike.

    python -m experiments.filters --config=experiments/configs/filters.py --workdir=runs/filters
    python -m experiments.filters --config=experiments/configs/filters.py:imagenet --workdir=runs/filters_imagenet \
        --config.nets.coarse.checkpoint=runs/alexnet --config.nets.fine.checkpoint=runs/zfnet

``nets``: name -> a `experiments.configs.visual` network (``train``, ``checkpoint``, ...). Preset
``fashion_mnist``: the paper's 11x11/4 vs 7x7/2 cannot be copied onto 28x28 images (an 11x11/4 conv1 leaves conv5
smaller than its pool), so the analog keeps the paper's contrast, a larger kernel with a larger stride against a
smaller one with a smaller stride: ``coarse`` conv1 7x7 stride 2 (pad 3, 14x14 maps) vs ``fine`` the small net's
5x5 stride 1 (pad 2, 28x28 maps). A net whose ``checkpoint`` is "" is trained into ``<workdir>/<name>`` first when
``train_if_missing`` (with its ``train`` config; both share every field but conv1). Preset ``imagenet``: AlexNet
(11x11/4) vs ZFNet (7x7/2) checkpoints. Other fields: ``layer2`` (the second layer's map), ``k``,
``maps_per_layer``, ``num_images`` (evaluation images scanned, 0 = all), ``seed``, ``spectrum_size`` (FFT size).
"""
import ml_collections

from experiments.configs import visual

COARSE_7X7_S2 = {"kernel": 7, "stride": 2, "padding": 3}


def get_config(arg: str = "fashion_mnist"):
    if arg not in ("fashion_mnist", "imagenet", "tiny"):
        raise ValueError(f"unknown preset {arg!r}; choose fashion_mnist, imagenet or tiny")
    c = ml_collections.ConfigDict()
    if arg == "imagenet":
        c.nets = {"coarse": visual.network("alexnet"), "fine": visual.network("zfnet")}
        c.nets.coarse.train.model_overrides = {}
    else:
        c.nets = {"coarse": visual.network(arg), "fine": visual.network(arg)}
        c.nets.coarse.train.model_overrides.update({"conv1": COARSE_7X7_S2})
    c.labels = {"coarse": "conv1 11x11/4 (AlexNet)" if arg == "imagenet" else "conv1 7x7/2 (coarse)",
                "fine": "conv1 7x7/2 (ZFNet)" if arg == "imagenet" else "conv1 5x5/1 (fine)"}
    c.train_if_missing = arg != "imagenet"
    c.layer2 = "conv2"
    c.k = 9
    c.maps_per_layer = 16 if arg != "tiny" else 4
    c.num_images = 0 if arg != "tiny" else 40
    c.seed = 0
    c.spectrum_size = 32
    return c
