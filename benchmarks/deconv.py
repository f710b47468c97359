"""Deconvnet projections: zfjax vs Captum's NeuronDeconvolution on the same CPU, ZFNet at 224x224.

- ``layer`` (deconv_layer): the strongest unit of every conv5 channel (256) of one image: `deconv.project_many`
  vs one Captum call per unit.
- ``units`` (deconv_units32): 32 conv5 channels of one image through the user's own
  ``jax.jit(jax.vmap(lambda c: deconv.project(arch, params, x, "conv5", c)))`` vs one Captum call per unit.
- ``batch`` (deconv_batch): the strongest unit of one conv5 channel in each of 32 images: `deconv.project` vs one
  Captum call whose neuron selector takes each image's maximum of that channel.

The reference is Captum in its fastest fair form (`common.fastest` times each candidate): on the twin cut after
relu5 (nothing above the projected layer runs), NCHW or channels-last, and for the per-unit benchmarks one call per
unit or one call per `COPIES` units on a batch of that many copies of the image with a per-example neuron selector.
For deconv_layer the forms are timed on `TUNE_UNITS` units, then the fastest projects them all. The earlier figure,
Captum on the whole twin (through fc8; one call per unit), is timed beside deconv_units32 and deconv_batch:
"reference_whole_s", "ratio_whole".

Both sides backpropagate through LCN (Captum runs nn.LocalResponseNorm's gradient): ``lcn_rule="gradient"``.
Usage: ``python -m benchmarks.deconv --mode layer|units|batch [--quick] [--rounds 5] [--size 224] [--count N]``
(``--quick``: the layer benchmark on 32 of the 256 channels; Captum projects units one by one).
The last line printed is the JSON report (see `benchmarks.common.report`).
"""
from __future__ import annotations

import functools
import statistics
import warnings

import jax
import numpy as np

from benchmarks import common, roofline
from zfjax import deconv

LAYER = "conv5"
LCN_RULE = "gradient"
CHANNEL = 7  # deconv_batch's channel
NAMES = {"layer": "deconv_layer", "units": "deconv_units32", "batch": "deconv_batch"}
COUNTS = {"layer": 256, "units": 32, "batch": 32}
COPIES = 8  # units per Captum call in the batched per-unit form (8 was the fastest of 8, 16, 32)
TUNE_UNITS = 32
TOL = 1e-4  # agreement: max relative difference


def cut(net):
    """The twin up to relu5: all a relu5 projection needs (the fc layers never run)."""
    return net[: list(dict(net.named_children())).index("relu5") + 1]


def layouts(net, x) -> dict[str, tuple]:
    """The cut twin and the image(s), NCHW and channels-last."""
    upto = cut(net)
    return {"cut net": (upto, x), "cut net, channels-last": (common.channels_last(upto), common.channels_last(x))}


def _attr(net, relu=None):
    from captum.attr import NeuronDeconvolution
    warnings.filterwarnings("ignore", message="Setting backward hooks")
    return NeuronDeconvolution(net, net.relu5 if relu is None else relu)


def captum_units(net, x, channels, copies: int = 1, *, relu=None, maps=None) -> np.ndarray:
    """Each channel's strongest unit of the one image `x` (1, C, H, W), projected by Captum on `net` (the whole
    twin or its cut), (U, H, W, C): one call per unit with a (c, h, w) selector, or per `copies` units on a batch
    of that many copies of the image with a per-example selector. The units are those of the ReLU module `relu`
    (default ``net.relu5``), whose maps the module `maps` computes (default: the twin cut after relu5)."""
    torch = common.setup_torch()
    attr = _attr(net, relu)
    with torch.no_grad():
        acts = (cut(net) if maps is None else maps)(x)[0]
    channels = torch.as_tensor(list(channels))
    flat = acts[channels].flatten(1).argmax(1)
    rows, cols = flat // acts.shape[2], flat % acts.shape[2]
    values = acts[channels, rows, cols]
    out = []
    for i in range(0, len(channels), copies):
        c, h, w = (t[i:i + copies] for t in (channels, rows, cols))
        if copies == 1:
            grad = attr.attribute(x.clone().requires_grad_(True), neuron_selector=(int(c), int(h), int(w)))
        else:
            each = torch.arange(len(c))
            grad = attr.attribute(x.expand(len(c), -1, -1, -1).clone().requires_grad_(True),
                                  neuron_selector=lambda o, c=c, h=h, w=w, each=each: o[each, c, h, w])
        out.append(grad)
    return (torch.cat(out).permute(0, 2, 3, 1) * values[:, None, None, None]).numpy()


def captum_batch(net, x, channel: int) -> np.ndarray:
    """One channel's strongest unit of every image of `x` (N, C, H, W) in one Captum call, (N, H, W, C)."""
    torch = common.setup_torch()
    selector = lambda out: out[:, channel].flatten(1).max(1).values  # noqa: E731 - its gradient seeds the argmax
    grad = _attr(net).attribute(x.clone().requires_grad_(True), neuron_selector=selector)
    with torch.no_grad():
        values = cut(net)(x)[:, channel].flatten(1).max(1).values
    return (grad.permute(0, 2, 3, 1) * values[:, None, None, None]).numpy()


def unit_forms(net, x) -> dict[str, functools.partial]:
    """The per-unit reference's candidate forms, each still to be given the channels."""
    forms = {}
    for name, (m, xx) in layouts(net, x).items():
        forms[f"{name}, one call per unit"] = functools.partial(captum_units, m, xx)
        forms[f"{name}, {COPIES} copies per call"] = functools.partial(captum_units, m, xx, copies=COPIES)
    return forms


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
    return lambda: jax.block_until_ready(project(arch, params, images, LAYER, CHANNEL, lcn_rule=LCN_RULE))


def arithmetic(arch, mode: str, count: int) -> float:
    """GFLOP the work needs: the forward to conv5 of each image, and each unit's backward through the cheaper of its
    cropped cone and the whole map."""
    forward, unit = roofline.forward_macs(arch, LAYER), roofline.cone_macs(arch, LAYER)
    images = count if mode == "batch" else 1
    return roofline.gflop(images * forward + count * min(unit, forward))


def bench(mode: str, count: int, rounds: int, size: int = 224) -> dict:
    """Pick the reference's fastest form, check agreement, warm up, ABAB; `count` units (layer/units) or images."""
    arch, params, images, net = common.zfnet(size, count if mode == "batch" else 1)
    x = common.to_nchw(images)
    ours = zfjax_fn(mode, arch, params, images, count)
    compile_s = common.warm(ours)
    out = np.asarray(ours())
    if mode == "batch":
        forms = {name: functools.partial(captum_batch, m, xx, CHANNEL) for name, (m, xx) in layouts(net, x).items()}
        ref = common.fastest(forms, out, TOL)
        reference, whole = ref.fn, functools.partial(captum_batch, net, x, CHANNEL)
    else:
        tune = range(min(count, TUNE_UNITS))
        forms = unit_forms(net, x)
        ref = common.fastest({name: functools.partial(f, tune) for name, f in forms.items()}, out[:len(tune)],
                             TOL)
        reference = functools.partial(forms[ref.name], range(count))
        whole = None if mode == "layer" else functools.partial(captum_units, net, x, range(count))
    others = [reference] + ([whole] if whole else [])
    err = max(ref.err, *(common.max_rel_err(out, f()) for f in others))
    timing = common.abab(ours, reference, rounds, *others[1:])
    extra = {"reference_whole_s": statistics.median(timing.more[0]),
             "ratio_whole": statistics.median(timing.more[0]) / statistics.median(timing.zfjax)} if whole else {}
    return common.report(NAMES[mode], timing, err <= TOL, compile_s=compile_s, err=err,
                         gflop=arithmetic(arch, mode, count), count=count, size=size, reference_form=ref.name,
                         reference_forms=ref.seconds, **extra)


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
