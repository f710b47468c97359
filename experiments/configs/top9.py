"""Fig. 2: the top 9 activations of chosen feature maps of layers 1-5 over the whole evaluation split, each
projected to pixels beside its receptive-field image patch.

    python -m experiments.top9 --config=experiments/configs/top9.py --workdir=runs/top9 \
        --config.checkpoint=runs/fmnist
    python -m experiments.top9 --config=experiments/configs/top9.py:zfnet --workdir=runs/top9_zfnet \
        --config.checkpoint=runs/zfnet

Fields (besides `experiments.configs.visual`'s): ``layers`` (the maps scanned; empty: a built-in net's conv maps,
post-ReLU, or a user's model's listed maps),
``k`` (9), ``maps_per_layer`` (how many feature maps each figure shows, drawn at random among those that fire),
``num_images`` (0 = the whole split), ``seed`` (which maps).
"""
from experiments.configs import visual


def get_config(arg: str = "fashion_mnist"):
    c = visual.network(arg)
    c.layers = ()
    c.k = 9
    c.maps_per_layer = 16
    c.num_images = 0
    c.seed = 0
    if arg == "tiny":
        c.maps_per_layer = 4
        c.num_images = 40
    return c
