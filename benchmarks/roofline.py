"""The roofline column of every benchmark: the arithmetic its work needs, and this machine's measured peak.

Arithmetic is counted in multiply-adds of the convolutions and fc layers (2 flops each; biases, ReLU, pooling and
LCN are not counted): the least a program must do for the benchmark's work, so GFLOP/s over it is a lower bound of
what the program runs at, and its fraction of the peak says how far the work is from the machine's limit. The peak
is the rate of a large float32 convolution timed in the benchmark's own process, once per ABAB round (same load,
same flags; `benchmarks.common.abab`).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import numpy as np

from benchmarks import common
from zfjax import deconv
from zfjax.analyses import occlusion
from zfjax.network import layers, models
from zfjax.network import receptive_field as rf

PEAK_INPUT, PEAK_FILTERS = (8, 56, 56, 256), (3, 3, 256, 256)  # a 3x3 conv at 256 -> 256 maps: 29.6 GFLOP


def peak_probe() -> tuple[Callable[[], object], float]:
    """The peak probe, warmed up: a callable that runs a large float32 3x3 convolution, the faster (one trial each)
    of XLA:CPU (`layers.conv`) and torch's oneDNN (channels-last, its faster layout here); and its GFLOP."""
    torch = common.setup_torch()
    x = jax.random.normal(jax.random.key(0), PEAK_INPUT)
    w = jax.random.normal(jax.random.key(1), PEAK_FILTERS) * 0.05
    conv = jax.jit(lambda x, w: layers.conv(x, w, None, 1, 1))
    xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)  # NHWC memory: channels-last
    wt = torch.tensor(np.asarray(w)).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)

    def oednn():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, padding=1)

    runs = (lambda: jax.block_until_ready(conv(x, w)), oednn)
    for run in runs:
        run()
    best = min(runs, key=lambda run: min(common.timed(run) for _ in range(2)))
    n, h, wd, _ = PEAK_INPUT
    return best, 2 * n * h * wd * math.prod(PEAK_FILTERS) / 1e9


def forward_macs(arch: models.Arch, upto: str | None = None) -> int:
    """Multiply-adds of one image's forward pass through `upto` (default: the whole net, fc layers included)."""
    names = list(models.macs(arch))
    keep = names if upto is None else [n for n in names if arch.layer_names.index(n) <= arch.layer_names.index(upto)]
    return sum(models.macs(arch)[n] for n in keep)


def train_macs(arch: models.Arch) -> int:
    """One image's train step: the forward, every weight gradient (as many again) and every input gradient but the
    first conv's (the images need none)."""
    macs = models.macs(arch)
    return 3 * sum(macs.values()) - macs[arch.convs[0].name]


def cone_macs(arch: models.Arch, layer: str) -> int:
    """One unit's projection through its receptive-field cone: each conv's transpose on the cone's windows (the
    forward's output window times the filter's multiply-adds per output), at `arch`'s input size."""
    cones = deconv.cone_stages(arch, layer, arch.input_shape[:2])
    total = 0
    for i, cone in enumerate(cones):
        if not cone.stage.pool:
            out = cones[i + 1].length if i + 1 < len(cones) else (1, 1)
            total += math.prod(out) * _per_output(arch, cone.stage.name)
    return total


def occlusion_macs(arch: models.Arch, patch: int, stride: int) -> int:
    """One occlusion map by the incremental path: the unoccluded forward, and per position the recomputed window of
    every conv and the fc layers."""
    hw = arch.input_shape[:2]
    positions = math.prod(len(occlusion.grid(n, patch, stride)) for n in hw)
    sizes = [occlusion.cone_windows(arch, axis, occlusion.grid(hw[axis], patch, stride), patch)[0]
             for axis in range(2)]
    macs = models.macs(arch)
    windows = sum(sy * sx * _per_output(arch, st.name) for st, sy, sx in zip(rf.stages(arch), *sizes) if not st.pool)
    head = sum(macs[f.name] for f in arch.fcs) + macs["fc8"]
    return forward_macs(arch) + positions * (windows + head)


def _per_output(arch: models.Arch, conv: str) -> int:
    """Multiply-adds of conv layer `conv` per output position: kernel^2 x input maps x output maps."""
    return math.prod(models.param_shapes(arch)[conv]["w"])


def gflop(macs: int) -> float:
    """Multiply-adds as GFLOP (2 flops each)."""
    return 2 * macs / 1e9
