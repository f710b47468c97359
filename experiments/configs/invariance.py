"""Fig. 5 (invariance) on the embedded net: five Fashion-MNIST test images (trouser, pullover, sandal, sneaker, bag)
translated vertically, scaled and rotated, through the demo's trained small net.

    python -m experiments.invariance --config=experiments/configs/invariance.py --workdir=runs/invariance

Fields: the network (`experiments.configs.visual`; presets fashion_mnist, tiny, zfnet, alexnet), the images
(`experiments.images`), ``translations`` (pixels, + = down),
``scales`` (factors about the centre), ``rotations`` (degrees, + = counter-clockwise), ``layers`` (the paper's
layer numbers whose feature distances are plotted: 1 and 7; for the small net layer 7 is fc7), ``fill`` (the value
outside the moved image, in input space: 0 = the mean pixel), ``batch_size`` (transform values per batch).
The paper's ranges on 224-pixel images are -60..60 px, 1..1.8 and 0..350 degrees; +-8 px is the same fraction of 28.
For an ImageNet checkpoint: --config=experiments/configs/invariance.py:zfnet --config.checkpoint=<workdir>
--config.images=skimage:chelsea,coffee --config.labels=281,967 --config.translations="$(seq -s, -60 10 60)".
"""
import ml_collections

from experiments import images
from experiments.configs import visual


def get_config(arg: str = "fashion_mnist") -> ml_collections.ConfigDict:
    c = images.add_fields(visual.network(arg))
    c.indices = (2, 1, 8, 9, 18)
    c.translations = tuple(range(-8, 9))
    c.scales = tuple(round(1 + 0.1 * k, 2) for k in range(9))
    c.rotations = tuple(range(0, 360, 10))
    c.layers = (1, 7)
    c.fill = 0.0
    c.batch_size = 8
    return c
