"""Occlusion sensitivity (Fig. 7): zfjax's incremental `occlusion_maps` vs Captum's `Occlusion`, ZFNet at 224x224.

Both evaluate p(true class) with a grey (0.0) square at every grid position: 1 + positions forward passes. Captum
returns per-pixel attributions (mean over the squares covering a pixel of p(unoccluded) - p(occluded)); the same
quantity is computed from zfjax's map to check agreement. zfjax also computes the top label and conv5 feature maps.
The two grids are the same only when `stride` divides `size - patch`: otherwise Captum adds a last square clipped
at the border, while zfjax's squares always lie inside the image, so such a run is refused.
The report's name carries the square: ``occlusion_p48_s16`` (the two maps of Fig. 7's benchmarks: patch 48 stride
16, patch 32 stride 8).

The reference is Captum in its fastest fair form (`common.fastest`): under `torch.no_grad`, NCHW or channels-last,
with the fastest of `PER_EVAL` perturbations per evaluation.

Usage: ``python -m benchmarks.occlusion [--quick] [--patch 48] [--stride 16] [--rounds 5] [--per-eval N]
[--size 224]`` (``--per-eval``: only that batch of perturbations; ``--size 64 --patch 16 --stride 8 --rounds 1``
is a smoke run).
The last line printed is the JSON report (see `benchmarks.common.report`).
"""
from __future__ import annotations

import functools
import time

import jax
import numpy as np

from benchmarks import common, roofline
from zfjax.analyses import occlusion
from zfjax.network import models

LABEL = 3
PER_EVAL = (16, 48, 144)  # Captum's perturbations_per_eval tried
TOL = 1e-3  # agreement of the attributions: max relative difference


def attribution_from_map(p0: float, prob_true: np.ndarray, shape: tuple[int, int], patch: int,
                         stride: int) -> np.ndarray:
    """Captum's occlusion attribution (H, W) from a p(true) map: mean over covering squares of p0 - p."""
    total, count = np.zeros(shape), np.zeros(shape)
    for i, y in enumerate(occlusion.grid(shape[0], patch, stride)):
        for j, x in enumerate(occlusion.grid(shape[1], patch, stride)):
            total[y:y + patch, x:x + patch] += p0 - prob_true[i, j]
            count[y:y + patch, x:x + patch] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def captum_map(net, x, patch: int, stride: int, per_eval: int) -> np.ndarray:
    """Captum's occlusion attribution (H, W) of p(LABEL) for the (1, C, H, W) image `x`, without autograd."""
    torch = common.setup_torch()
    from captum.attr import Occlusion
    attr = Occlusion(lambda v: torch.softmax(net(v), dim=1))
    with torch.no_grad():
        out = attr.attribute(x, sliding_window_shapes=(x.shape[1], patch, patch), strides=(x.shape[1], stride, stride),
                             baselines=0.0, target=LABEL, perturbations_per_eval=per_eval)
    return out[0, 0].numpy()


def reference_forms(net, x, patch: int, stride: int, per_eval: tuple[int, ...]) -> dict[str, functools.partial]:
    """Captum on the NCHW and on the channels-last twin, with each batch of perturbations."""
    last = common.channels_last(net), common.channels_last(x)
    return {f"{layout}, perturbations_per_eval={n}": functools.partial(captum_map, m, xx, patch, stride, n)
            for layout, (m, xx) in {"NCHW": (net, x), "channels-last": last}.items() for n in per_eval}


def bench(patch: int, stride: int, rounds: int, per_eval: tuple[int, ...] = PER_EVAL, size: int = 224) -> dict:
    """One Fig. 7 map of one random size x size image."""
    if (size - patch) % stride:
        raise ValueError(f"stride {stride} does not divide size - patch = {size - patch}: Captum's grid would add a "
                         "clipped square that zfjax's does not have, so the maps could not be compared")
    arch = models.get("zfnet", init="fan_in", input_shape=(size, size, 3))
    params = models.init(arch, jax.random.key(0))
    image = np.asarray(jax.random.uniform(jax.random.key(1), arch.input_shape, minval=-1.0, maxval=1.0), np.float32)
    net = common.torch_net(arch, params)
    x = common.to_nchw(image[None])

    def ours():
        return occlusion.occlusion_maps(arch, params, image, LABEL, patch=patch, stride=stride)

    t0 = time.perf_counter()
    maps = ours()
    compile_s = time.perf_counter() - t0
    p0 = float(jax.nn.softmax(models.apply(arch, params, image[None]).logits[0])[LABEL])
    ref = common.fastest(reference_forms(net, x, patch, stride, per_eval),
                         attribution_from_map(p0, maps.prob_true, image.shape[:2], patch, stride), TOL, tries=1)
    timing = common.abab(ours, ref.fn, rounds)
    gflop = roofline.gflop(roofline.occlusion_macs(arch, patch, stride))
    return common.report(f"occlusion_p{patch}_s{stride}", timing, ref.err <= TOL, compile_s=compile_s, err=ref.err,
                         gflop=gflop, positions=maps.prob_true.size, size=size, patch=patch, stride=stride,
                         reference_form=ref.name, reference_forms=ref.seconds)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--per-eval", type=int, default=None, help="only this perturbations_per_eval for Captum")
    parser.add_argument("--size", type=int, default=224, help="image side (224 for reported numbers)")
    args = parser.parse_args()
    per_eval = PER_EVAL if args.per_eval is None else (args.per_eval,)
    bench(args.patch, args.stride, args.rounds or 5, per_eval, args.size)  # --quick: the same


if __name__ == "__main__":
    main()
