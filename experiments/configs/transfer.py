"""Transfer (Tables 4, 5, Fig. 9): layers 1-7 of a trained net frozen + a new softmax, vs the net from scratch.

    python -m experiments.transfer --config=experiments/configs/transfer.py:digits --workdir=runs/transfer_digits
    python -m experiments.transfer --config=experiments/configs/transfer.py:caltech101 --workdir=runs/transfer_c101 \
        --config.pretrain_workdir=runs/zfnet
    python -m experiments.transfer --config=experiments/configs/transfer.py:caltech256 --workdir=runs/transfer_c256 \
        --config.pretrain_workdir=runs/zfnet --config.data_dir=/data/256_ObjectCategories

Arguments: ``digits`` (embedded analog: the Fashion-MNIST small net, trained into ``pretrain_workdir`` first if it has
no checkpoint, transferred to scikit-learn's digits resized to 28x28, 1/5/10/30 per class), ``caltech101`` (15/30 per
class, up to 50 test per class), ``caltech256`` (15/30/45/60, clutter excluded, up to 25 test per class), ``tiny``
(about a minute: the tiny training config, trained into ``runs/tiny`` if missing, 2 splits; smoke runs and
tests). Fields: ``pretrain`` (the training config of the pre-trained net), ``pretrain_workdir``,
``train_if_missing``, ``dataset``, ``data_dir``, ``hashes_file`` (drop images whose pixel hash is listed),
``shots``, ``num_splits``, ``max_test`` (0 = all the rest), ``seed``, ``head_l2``/``head_steps`` (the softmax),
``layer`` (the frozen layer the softmax reads: "" = the last hidden fc layer, the paper's layer 7;
a map layer is max-pooled into a ``grid`` x ``grid`` layout), ``scratch`` (train from scratch too) and its SGD fields ``scratch_*``, ``batch_size`` (feature extraction).
"""
import ml_collections

from experiments.configs import default, fashion_mnist, tiny

_DATASETS = {
    "digits": dict(shots=(1, 5, 10, 30), max_test=0),
    "caltech101": dict(shots=(15, 30), max_test=50),
    "caltech256": dict(shots=(15, 30, 45, 60), max_test=25),
}


def get_config(arg: str = "digits") -> ml_collections.ConfigDict:
    if arg not in (*_DATASETS, "tiny"):
        raise ValueError(f"transfer config {arg!r}: use one of {sorted(_DATASETS) + ['tiny']}")
    c = ml_collections.ConfigDict()
    c.dataset = "digits" if arg == "tiny" else arg
    c.data_dir = ""
    c.hashes_file = ""
    c.pretrain = fashion_mnist.get_config() if arg in ("digits", "tiny") else default.get_config()
    c.pretrain_workdir = "runs/fmnist" if arg in ("digits", "tiny") else "runs/zfnet"
    c.train_if_missing = arg in ("digits", "tiny")  # minutes for the small net; ImageNet must be trained on purpose
    c.shots = _DATASETS.get(arg, _DATASETS["digits"])["shots"]
    c.max_test = _DATASETS.get(arg, _DATASETS["digits"])["max_test"]
    c.num_splits = 5
    c.seed = 0
    c.batch_size = 256
    c.layer = ""
    c.grid = 4
    c.head_l2 = 1e-2
    c.head_steps = 200
    c.scratch = True
    c.scratch_epochs = 100
    c.scratch_min_steps = 200
    c.scratch_batch_size = 64
    c.scratch_learning_rate = 0.01
    c.scratch_weight_decay = 5e-4
    if arg == "tiny":
        c.pretrain = tiny.get_config()
        c.pretrain_workdir = "runs/tiny"  # the tiny training config, trained there in about 20 s if missing
        c.shots = (1, 3)
        c.num_splits = 2
        c.max_test = 5
        c.head_steps = 20
        c.scratch_epochs = 2
        c.scratch_min_steps = 2
    return c
