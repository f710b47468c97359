"""The network fields shared by the visual experiments (top9, evolution, filters), and the presets they accept.

Presets: ``fashion_mnist`` (the embedded small net; ``checkpoint`` = the workdir of its training run),
``zfnet`` / ``alexnet`` (ImageNet; ``checkpoint`` = the train_imagenet workdir, or ``weights`` = an imported
.safetensors/.pth file with ``weights_layout``), ``tiny`` (seconds, for tests).
Fields: ``model`` (a user's own model: ``package.module:function`` or ``package.module:function:arg``, whose
``function()`` returns a `zfjax.network.Network`; when set it is the network, and ``train`` only names the data,
read as pixels in [0, 1] for the model's own ``preprocess``; see ``experiments/flax_resnet.py``), ``checkpoint`` (a
training run's workdir: its newest checkpoint, with the architecture and input
normalization the run recorded, whatever the preset), ``weights`` (an imported file: torchvision's layout is
torchvision's AlexNet, any other layout the preset's architecture), ``weights_layout`` ("" = guess from the keys),
``normalization`` (of imported weights' inputs: "torchvision" = torchvision's ImageNet mean and std, "dataset" = the
preset's dataset mean and ``train.pixel_scale`` (needs the dataset on disk), or per-channel mean pixel values such as
"123.7,116.3,103.5" with ``train.pixel_scale``; "" = "torchvision" for torchvision's layout, else "dataset"),
``random_init`` (freshly initialized weights when no other source is given: tests only), ``train`` (the preset's
training config: it names the data the experiment reads -- with a checkpoint it must be the run's dataset; for
imported or random weights it also gives the architecture), ``batch_size`` and ``num_threads`` of the scans.
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
    c.model = ""
    c.checkpoint = ""
    c.weights = ""
    c.weights_layout = ""
    c.normalization = ""
    c.random_init = False
    c.batch_size = 256 if arg in ("fashion_mnist", "tiny") else 64
    c.num_threads = 2 if arg in ("fashion_mnist", "tiny") else 8
    return c
