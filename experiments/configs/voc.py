"""Table 6: PASCAL VOC 2012 classification: one-vs-all logistic (2-way softmax) per class on layer-7 features.

    python -m experiments.voc --config=experiments/configs/voc.py --workdir=runs/voc \
        --config.pretrain_workdir=runs/zfnet --config.data_dir=~/tensorflow_datasets

TFDS ``voc/2012`` must be prepared in ``data_dir`` (the experiment says how when it is not). Its test split has no
labels: the classifiers are trained on ``train`` and evaluated on ``validation`` (the paper used the test server).
Argument ``tiny``: the small Fashion-MNIST net, for tests on ``tfds.testing.mock_data``. Fields: ``pretrain``,
``pretrain_workdir``, ``train_if_missing``, ``data_dir``, ``head_l2``/``head_steps``, ``batch_size``.
"""
import ml_collections

from experiments.configs import default, tiny


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny"):
        raise ValueError(f"voc config {arg!r}: use no argument or 'tiny'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""
    c.pretrain = tiny.get_config() if arg == "tiny" else default.get_config()
    c.pretrain_workdir = "" if arg == "tiny" else "runs/zfnet"
    c.train_if_missing = arg == "tiny"
    c.head_l2 = 1e-2
    c.head_steps = 20 if arg == "tiny" else 200
    c.batch_size = 64
    return c
