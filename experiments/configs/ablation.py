"""Table 3's ablations: ``<base>,<variant>`` with base ``alexnet`` or ``zfnet`` and a variant from `VARIANTS`.

    python -m experiments.train_imagenet --config=experiments/configs/ablation.py:alexnet,no_fc67 \
        --workdir=runs/alexnet_no_fc67

Variants: ``no_fc7`` (layer 7 removed), ``no_fc67`` (layers 6, 7), ``no_conv34`` (layers 3, 4), ``no_conv34_fc67``
(layers 3, 4, 6, 7), ``fc2048`` / ``fc8192`` (layers 6, 7 resized), ``conv345_wide`` (layers 3, 4, 5 with 512,
1024, 512 maps), ``conv345_wide_fc8192`` (both).
"""
from experiments.configs import default

_WIDE = {"conv3": {"features": 512}, "conv4": {"features": 1024}, "conv5": {"features": 512}}
_FC8192 = {"fc6": {"features": 8192}, "fc7": {"features": 8192}}
VARIANTS = {
    "no_fc7": ((("fc7",)), {}),
    "no_fc67": (("fc6", "fc7"), {}),
    "no_conv34": (("conv3", "conv4"), {}),
    "no_conv34_fc67": (("conv3", "conv4", "fc6", "fc7"), {}),
    "fc2048": ((), {"fc6": {"features": 2048}, "fc7": {"features": 2048}}),
    "fc8192": ((), _FC8192),
    "conv345_wide": ((), _WIDE),
    "conv345_wide_fc8192": ((), {**_WIDE, **_FC8192}),
}


def get_config(arg: str = "alexnet,no_fc67"):
    base, _, variant = arg.partition(",")
    if base not in ("alexnet", "zfnet") or variant not in VARIANTS:
        raise ValueError(f"ablation config {arg!r}: use '<alexnet|zfnet>,<variant>' with a variant from "
                         f"{sorted(VARIANTS)}")
    c = default.get_config()
    c.model = base
    c.remove, overrides = VARIANTS[variant]
    c.model_overrides = overrides
    return c
