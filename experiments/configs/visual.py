"""The network fields shared by the visual experiments (top9, evolution, filters), and the presets they accept.

Presets: ``fashion_mnist`` (the embedded small net; ``checkpoint`` = the workdir of its training run),
``zfnet`` / ``alexnet`` (ImageNet; ``checkpoint`` = the train_imagenet workdir, or ``weights`` = an imported
.safetensors/.pth file with ``weights_layout``), ``tiny`` (seconds, for tests).
Fields: ``train`` (the training config the network was trained with: it fixes the architecture, the data and the
input normalization), ``checkpoint``, ``weights``, ``weights_layout`` ("" = guess), ``random_init`` (use freshly
initialized weights when neither is given: tests only), ``batch_size`` and ``num_threads`` of the scans.
"""
import ml_collections

from experiments.configs import alexnet, fashion_mnist, tiny, zfnet

TRAIN = {"fashion_mnist": fashion_mnist, "zfnet": zfnet, "alexnet": alexnet, "tiny": tiny}


def network(arg: str) -> ml_collections.ConfigDict:
    """The network fields for preset `arg` (see the module docstring)."""
    if arg not in TRAIN:
        raise ValueError(f"unknown preset {arg!r}; choose one of {sorted(TRAIN)}")
    c = ml_collections.ConfigDict()
    c.train = TRAIN[arg].get_config()
    c.checkpoint = ""
    c.weights = ""
    c.weights_layout = ""
    c.random_init = False
    c.batch_size = 256 if arg in ("fashion_mnist", "tiny") else 64
    c.num_threads = 2 if arg in ("fashion_mnist", "tiny") else 8
    return c
