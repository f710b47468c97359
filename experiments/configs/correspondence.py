"""Table 1 (correspondence) on the embedded net: five Fashion-MNIST test T-shirts (the first five of the test
split whose sleeve boxes are mostly garment: mean pixel > 100) with the same part masked in each (the sleeve on the
image's left and right, the neckline: 6x6 boxes at the same place in every image, since Fashion-MNIST items are
centred and scaled alike), and random 6x6 boxes on the garment as the control.

    python -m experiments.correspondence --config=experiments/configs/correspondence.py --workdir=runs/correspondence

Fields: the network (`experiments.configs.visual`; presets fashion_mnist, tiny, zfnet, alexnet), the images
(`experiments.images`), ``parts`` (name -> box (top, left, height,
width) in network-input pixels, one for all images or one per image), ``random_within`` (the region random boxes
are drawn in, the object), ``random_repeats`` (draws of random boxes), ``layers`` (the paper's layer numbers: 5 and
7), ``fill`` (mask value in input space: 0 = the mean pixel), ``rtol`` (|eps| below rtol * max|f| counts as no
change), ``seed``. For ImageNet-trained nets use photos with per-image boxes, e.g. --config.images=files:<5 dog
photos> with per-image eye/nose boxes in 224x224 center-crop coordinates.
"""
import ml_collections

from experiments import images
from experiments.configs import visual


def get_config(arg: str = "fashion_mnist") -> ml_collections.ConfigDict:
    c = images.add_fields(visual.network(arg))
    c.indices = (19, 85, 88, 113, 121)
    c.parts = ml_collections.ConfigDict({"left sleeve": (5, 3, 6, 6), "right sleeve": (5, 19, 6, 6),
                                         "neckline": (0, 11, 6, 6)})
    c.random_within = (2, 4, 24, 20)
    c.random_repeats = 20
    c.layers = (5, 7)
    c.fill = 0.0
    c.rtol = 1e-6
    c.seed = 0
    return c
