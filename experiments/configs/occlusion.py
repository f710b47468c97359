"""Fig. 7 (occlusion sensitivity) on the embedded net: three Fashion-MNIST test images (ankle boot, T-shirt,
sandal: of the first 40, ones whose maps vary, as the paper shows chosen examples), an 8x8 square of the mean
pixel slid over them one pixel at a time, through the demo's trained small net.

    python -m experiments.occlusion --config=experiments/configs/occlusion.py --workdir=runs/occlusion

Fields: the network (`experiments.configs.visual`; presets fashion_mnist, tiny, zfnet, alexnet), the images
(`experiments.images`), ``patch`` and ``stride`` of the square (pixels),
``fill`` (its value in input space: 0 = the mean pixel, the paper's grey), ``layer`` (whose strongest map is
tracked; "" = the network's last conv layer, conv5 of the built-in nets, or a user's model's last listed map), ``projections`` (occluder positions whose projection of that map is shown, besides
the unoccluded one), ``batch_size`` (positions evaluated at once).
For an ImageNet checkpoint: --config=experiments/configs/occlusion.py:zfnet --config.checkpoint=<workdir>
--config.images=skimage:chelsea --config.labels=281 --config.patch=48 --config.stride=8.
"""
import ml_collections

from experiments import images
from experiments.configs import visual


def get_config(arg: str = "fashion_mnist") -> ml_collections.ConfigDict:
    c = images.add_fields(visual.network(arg))
    c.indices = (0, 27, 21)
    c.patch = 8
    c.stride = 1
    c.fill = 0.0
    c.layer = ""
    c.projections = 3
    c.batch_size = 64
    return c
