"""Deconvnet projections: zfjax vs Captum's NeuronDeconvolution on the same CPU, ZFNet at 224x224.

- ``layer`` (deconv_layer): the strongest unit of every conv5 channel (256) of one image: `deconv.project_many`
  vs one Captum call per unit.
- ``units`` (deconv_units32): 32 conv5 channels of one image through the user's own
  ``jax.jit(jax.vmap(lambda c: deconv.project(arch, params, x, "conv5", c)))`` vs one Captum call per unit.
- ``batch`` (deconv_batch): the strongest unit of one conv5 channel in each of 32 images: `deconv.project` vs one
  Captum call whose neuron selector takes each image's maximum of that channel.

Both sides backpropagate through LCN (Captum runs nn.LocalResponseNorm's gradient): ``lcn_rule="gradient"``.
Usage: ``python -m benchmarks.deconv --mode layer|units|batch [--quick] [--rounds 5] [--size 224] [--count N]``
(``--quick``: the layer benchmark on 32 of the 256 channels; Captum projects units one by one).
The last line printed is the JSON report (see `benchmarks.common.report`).
"""
from __future__ import annotations

import warnings

import jax
import numpy as np

from benchmarks import common
from zfjax import deconv

LAYER = "conv5"
LCN_RULE = "gradient"
NAMES = {"layer": "deconv_layer", "units": "deconv_units32", "batch": "deconv_batch"}
COUNTS = {"layer": 256, "units": 32, "batch": 32}


def _captum(net):
    """Captum's NeuronDeconvolution on relu5 and the torch net cut after it (for the units' values)."""
    from captum.attr import NeuronDeconvolution
    warnings.filterwarnings("ignore", message="Setting backward hooks")
    upto = net[: list(dict(net.named_children())).index("relu5") + 1]
    return NeuronDeconvolution(net, net.relu5), upto


def captum_units(net, x, channels) -> np.ndarray:
    """Each channel's strongest unit of the one image `x` (1, C, H, W), one Captum call per unit, (U, H, W, C)."""
    torch = common.setup_torch()
    attr, upto = _captum(net)
    with torch.no_grad():
        acts = upto(x)[0]
    out = []
    for c in channels:
        h, w = divmod(int(acts[c].argmax()), acts.shape[2])
        grad = attr.attribute(x.clone().requires_grad_(True), neuron_selector=(c, h, w))
        out.append(grad[0].permute(1, 2, 0).numpy() * float(acts[c, h, w]))
    return np.stack(out)


def captum_batch(net, x, channel: int) -> np.ndarray:
    """One channel's strongest unit of every image of `x` (N, C, H, W) in one Captum call, (N, H, W, C)."""
    torch = common.setup_torch()
    attr, upto = _captum(net)
    selector = lambda out: out[:, channel].flatten(1).max(1).values  # noqa: E731 - its gradient seeds the argmax
    grad = attr.attribute(x.clone().requires_grad_(True), neuron_selector=selector)
    with torch.no_grad():
        values = upto(x)[:, channel].flatten(1).max(1).values
    return grad.permute(0, 2, 3, 1).numpy() * values.numpy()[:, None, None, None]


def zfjax_fn(mode: str, arch, params, images, count: int):
    """The zfjax call of `mode`, blocking until its result is ready."""
    if mode == "layer":
        return lambda: jax.block_until_ready(
            deconv.project_many(arch, params, images[0], LAYER, np.arange(count), lcn_rule=LCN_RULE).projections)
    if mode == "units":
        user = jax.jit(jax.vmap(lambda p, x, c: deconv.project(arch, p, x, LAYER, c, lcn_rule=LCN_RULE)[0],
                                in_axes=(None, None, 0)))
        channels = jax.numpy.arange(count)
        return lambda: jax.block_until_ready(user(params, images, channels))
    project = jax.jit(deconv.project, static_argnames=("arch", "layer", "rule", "lcn_rule"))
    return lambda: jax.block_until_ready(project(arch, params, images, LAYER, 7, lcn_rule=LCN_RULE))


def bench(mode: str, count: int, rounds: int, size: int = 224) -> dict:
    """Check agreement, warm up, ABAB; `count` units (layer/units) or images (batch)."""
    arch, params, images, net = common.zfnet(size, count if mode == "batch" else 1)
    x = common.to_nchw(images)
    ours = zfjax_fn(mode, arch, params, images, count)
    if mode == "batch":
        reference = lambda: captum_batch(net, x, 7)  # noqa: E731
    else:
        reference = lambda: captum_units(net, x, range(count))  # noqa: E731
    compile_s = common.warm(ours)
    err = common.max_rel_err(ours(), reference())
    a, b = common.abab(ours, reference, rounds)
    return common.report(NAMES[mode], a, b, err <= 1e-4, compile_s=compile_s, err=err, count=count, size=size)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--mode", choices=tuple(NAMES), default="layer")
    parser.add_argument("--count", type=int, default=None, help="units (layer, units) or images (batch)")
    parser.add_argument("--size", type=int, default=224, help="image side (224 for reported numbers)")
    args = parser.parse_args()
    common.setup_torch()
    count = args.count or (32 if args.quick else COUNTS[args.mode])  # quick: 32 of the 256 conv5 channels
    bench(args.mode, count, args.rounds or 5, args.size)


if __name__ == "__main__":
    main()
