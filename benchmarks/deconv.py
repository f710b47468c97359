"""Deconvnet projections: zfjax vs Captum's NeuronDeconvolution on the same CPU, ZFNet at 224x224.

- ``channels``: the strongest unit of each of the first N conv5 channels (all 256 by default) of one image:
  `deconv.project_many` (one shared forward, chunks of vmapped backward passes) vs one Captum call per unit.
- ``batch``: the strongest unit of one conv5 channel in each of B images: `deconv.project` (position=None) vs one
  Captum call whose neuron selector takes each image's maximum of that channel.

Usage: ``python -m benchmarks.deconv [--mode channels|batch] [--channels 256] [--batch 8] [--rounds 5]``.
The last line printed is the JSON report (see `benchmarks.common.report`).
"""
from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np

from benchmarks import common
from zfjax import deconv, models

LAYER = "conv5"
LCN_RULE = "gradient"  # Captum backpropagates through nn.LocalResponseNorm: do the same work


def _setup(batch: int):
    arch = models.get("zfnet", init="fan_in")  # fan-in init keeps conv5 active with random weights
    params = models.init(arch, jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (batch, 224, 224, 3), minval=-1.0, maxval=1.0)
    net = common.torch_net(arch, params)
    return arch, params, images, net


def bench_channels(num: int, rounds: int) -> dict:
    """All (or the first `num`) conv5 channels of one image."""
    torch = common.setup_torch()
    from captum.attr import NeuronDeconvolution
    arch, params, images, net = _setup(1)
    attr = NeuronDeconvolution(net, net.relu5)
    x = common.to_nchw(images)
    channels = list(range(num))

    def ours():
        return jax.block_until_ready(deconv.project_many(arch, params, images[0], LAYER, channels, lcn_rule=LCN_RULE))

    def reference():
        with torch.no_grad():
            acts = net[: list(dict(net.named_children())).index("relu5") + 1](x)[0]
        out = []
        for c in channels:
            flat = int(acts[c].argmax())
            h, w = divmod(flat, acts.shape[2])
            grad = attr.attribute(x.clone().requires_grad_(True), neuron_selector=(c, h, w))
            out.append(grad[0].permute(1, 2, 0).numpy() * float(acts[c, h, w]))
        return np.stack(out)

    t0 = time.perf_counter()
    got = ours()
    compile_s = time.perf_counter() - t0
    err = common.max_rel_err(got.projections, reference())
    a, b = common.abab(ours, reference, rounds)
    return common.report(f"deconv_conv5_{num}_channels_1_image", a, b, err <= 1e-4, compile_s=compile_s, err=err)


def bench_batch(batch: int, rounds: int, channel: int = 7) -> dict:
    """One conv5 channel's strongest unit in each of `batch` images."""
    torch = common.setup_torch()
    from captum.attr import NeuronDeconvolution
    arch, params, images, net = _setup(batch)
    attr = NeuronDeconvolution(net, net.relu5)
    x = common.to_nchw(images)
    project = jax.jit(deconv.project, static_argnames=("arch", "layer", "rule", "lcn_rule"))

    def ours():
        return jax.block_until_ready(project(arch, params, images, LAYER, channel, lcn_rule=LCN_RULE))

    def reference():
        selector = lambda out: out[:, channel].flatten(1).max(1).values  # noqa: E731 - its gradient seeds the argmax
        grad = attr.attribute(x.clone().requires_grad_(True), neuron_selector=selector)
        with torch.no_grad():
            values = net[: list(dict(net.named_children())).index("relu5") + 1](x)[:, channel].flatten(1).max(1).values
        return grad.permute(0, 2, 3, 1).numpy() * values.numpy()[:, None, None, None]

    t0 = time.perf_counter()
    got = ours()
    compile_s = time.perf_counter() - t0
    err = common.max_rel_err(got, reference())
    a, b = common.abab(ours, reference, rounds)
    return common.report(f"deconv_conv5_channel_{batch}_images", a, b, err <= 1e-4, compile_s=compile_s, err=err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("channels", "batch"), default="channels")
    parser.add_argument("--channels", type=int, default=256, help="first N conv5 channels (mode channels)")
    parser.add_argument("--batch", type=int, default=8, help="images (mode batch)")
    parser.add_argument("--rounds", type=int, default=5, help="ABAB rounds (>= 5 for a reported number)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Setting backward hooks")
    if args.mode == "channels":
        bench_channels(args.channels, args.rounds)
    else:
        bench_batch(args.batch, args.rounds)


if __name__ == "__main__":
    main()
