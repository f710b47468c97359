"""The unit explorer: every unit of the chosen layers in one static page, from one scan of the evaluation split.

    python -m experiments.explore --config=experiments/configs/explore.py --workdir=runs/explore \
        --config.checkpoint=runs/fmnist
    python -m experiments.explore --config=experiments/configs/explore.py:zfnet --workdir=runs/explore_zfnet \
        --config.checkpoint=runs/zfnet --config.train.data_dir=~/tensorflow_datasets
    python -m experiments.explore --config=experiments/configs/explore.py --workdir=runs/explore_mine \
        --config.model=mypackage.models:network
    # many hosts: each scans its shard and renders its share of the sheets into the shared workdir
    python -m experiments.explore ... --coordinator_address=host0:1234 --num_processes=4 --process_id=<i>

Fields (besides `experiments.configs.visual`'s network fields, ``model`` among them): ``layers`` (empty: every conv layer, i.e. those named ``conv*``, else
every layer of the model), ``k`` (top activations shown per unit, 9), ``histogram_k`` (top activations whose
classes are counted, 100), ``num_images`` (0 = the whole split), ``tile_size`` (longest side of a sprite tile in
pixels; larger receptive fields are shrunk to it; 0 = never), ``class_names`` (for datasets that carry none).
"""
from experiments.configs import visual


def get_config(arg: str = "fashion_mnist"):
    c = visual.network(arg)
    c.layers = ()
    c.k = 9
    c.histogram_k = 100
    c.num_images = 0
    c.tile_size = 96 if arg in ("zfnet", "alexnet") else 0
    c.class_names = ()
    if arg == "tiny":
        c.num_images = 40
        c.histogram_k = 20
    return c
