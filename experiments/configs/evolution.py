"""Fig. 4: for chosen maps of each layer, the strongest activation over (a subset of) the training set at each
epoch snapshot of a training run, projected to pixels, one column per epoch.

    python -m experiments.evolution --config=experiments/configs/evolution.py --workdir=runs/evolution \
        --config.checkpoint=runs/fmnist
    python -m experiments.evolution --config=experiments/configs/evolution.py:zfnet --workdir=runs/evolution_zfnet \
        --config.checkpoint=runs/zfnet --config.num_images=50000

Fields (besides `experiments.configs.visual`'s): ``layers`` (empty: a built-in net's conv maps, or a user's
model's listed maps; a user's model gives its epochs through its Network's ``snapshots``), ``maps_per_layer`` (drawn at random among the maps
that fire in the last snapshot), ``num_images`` (the first N training images searched at every epoch; 0 = all;
the paper searched all of them), ``seed``.
"""
from experiments.configs import visual


def get_config(arg: str = "fashion_mnist"):
    c = visual.network(arg)
    c.layers = ()
    c.maps_per_layer = 4
    c.num_images = 10000 if arg == "fashion_mnist" else 0 if arg == "tiny" else 20000
    c.seed = 0
    return c
