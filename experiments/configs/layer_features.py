"""Table 7: features of each layer 1-7 of a trained net, a linear SVM and a softmax on each.

    python -m experiments.layer_features --config=experiments/configs/layer_features.py:digits \
        --workdir=runs/layer_features_digits
    python -m experiments.layer_features --config=experiments/configs/layer_features.py:caltech101 \
        --workdir=runs/layer_features_c101 --config.pretrain_workdir=runs/zfnet

Arguments: ``digits`` (embedded analog: the Fashion-MNIST small net on scikit-learn's digits, 30 per class),
``caltech101`` (30 per class, up to 50 test), ``caltech256`` (60 per class, up to 25 test), ``tiny`` (a smoke run:
the tiny net of ``runs/tiny``, trained there first if missing; also the tests).
Maps (layers 1-5) are max-pooled into a ``grid`` x ``grid`` layout and flattened (`zfjax.analyses.features`); fc6/fc7 are
used as they are. Fields as in ``transfer.py`` plus ``shots``, ``grid``, ``svm_c`` (LinearSVC's C on standardized
features), ``head_l2``/``head_steps`` (the softmax), ``layers`` (empty = the paper's layers 1-7 of the net).
"""
import ml_collections

from experiments.configs import transfer

_SHOTS = {"digits": (30, 0), "caltech101": (30, 50), "caltech256": (60, 25), "tiny": (3, 5)}


def get_config(arg: str = "digits") -> ml_collections.ConfigDict:
    if arg not in _SHOTS:
        raise ValueError(f"layer_features config {arg!r}: use one of {sorted(_SHOTS)}")
    c = transfer.get_config(arg)
    for field in ("shots", "scratch", "scratch_epochs", "scratch_min_steps", "scratch_batch_size",
                  "scratch_learning_rate", "scratch_weight_decay"):
        del c[field]
    c.shots, c.max_test = _SHOTS[arg]
    c.grid = 4
    c.svm_c = 0.01
    c.layers = ()
    return c
