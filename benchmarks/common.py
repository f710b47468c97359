"""Shared machinery of the benchmarks: the torch twin of a zfjax network, the reference's fastest form, ABAB
timing, the report line.

Every benchmark runs the same work in zfjax and in the reference (torch 2.13 CPU + Captum) in one process. The
reference gets its fastest fair form: each candidate form (the net cut after the layer, channels-last, batch sizes,
...) is timed and the fastest is used (`fastest`). Outputs are checked to agree before timing, both sides are warmed
up (zfjax's compile time is reported apart), A/B/A/B alternate, and each benchmark prints a table and, as its last
line, one JSON object with the median times, their ratio and the roofline figures (`report`).
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import pathlib
import statistics
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from zfjax.network import models, weights

CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"


def parser(doc: str) -> argparse.ArgumentParser:
    """Command line shared by the benchmarks: `--quick` (small sizes, few rounds) and `--rounds`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes / few rounds (smoke runs, benchmarks.all)")
    p.add_argument("--rounds", type=int, default=None, help="ABAB rounds (>= 5 for a reported number)")
    return p


def zfnet(size: int = 224, batch: int = 1, num_classes: int = 1000, seed: int = 0, twin: bool = True,
          name: str = "zfnet"):
    """ZFNet (or the arch `name`) with fan-in init (keeps conv5 active with random weights), params, uniform images,
    the torch twin (None when `twin` is False: no torch needed)."""
    channels = models.get(name).input_shape[2]
    arch = models.get(name, init="fan_in", input_shape=(size, size, channels), num_classes=num_classes)
    params = models.init(arch, jax.random.key(seed))
    images = jax.random.uniform(jax.random.key(seed + 1), (batch, *arch.input_shape), minval=-1.0, maxval=1.0)
    return arch, params, images, torch_net(arch, params) if twin else None


def warm(fn: Callable[[], object]) -> float:
    """Seconds of the first call (zfjax: tracing + compilation + one run)."""
    return timed(fn)


def setup_torch():
    """Import torch with one intra-op thread per core (its best on this machine)."""
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def torch_net(arch: models.Arch, params: models.Params, *, upto: str | None = None, lcn_backward: str = "gradient"):
    """The zfjax network as an efficient NCHW torch module with the same weights, for Captum and the tests.

    Uses `nn.ReLU` modules (Captum's deconvolution and guided backprop hook them), ceil-mode `nn.MaxPool2d` and
    `nn.LocalResponseNorm(n, alpha * n, beta, k)` (torch divides alpha by n). The first fc layer flattens NCHW,
    so its weight comes through `weights.to_torch`, which permutes the rows. `upto` (a conv or pool layer) cuts the
    net after that layer (a conv's ReLU, a pool's LRN); `lcn_backward="identity"` gives LRN the identity backward
    (zfjax.deconv's ``lcn_rule="identity"``).
    """
    torch = setup_torch()
    nn = torch.nn

    class LrnIdentityBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return nn.functional.local_response_norm(x, arch.lcn_size, arch.lcn_alpha * arch.lcn_size, arch.lcn_beta,
                                                     arch.lcn_k)

        @staticmethod
        def backward(ctx, g):
            return g

    class LrnSkipped(nn.Module):
        def forward(self, x):
            return LrnIdentityBackward.apply(x)

    state = {k: torch.tensor(v) for k, v in weights.to_torch(params, arch).items()}
    mods: dict[str, nn.Module] = {}
    cin = arch.input_shape[2]
    for c in arch.convs:
        mods[c.name] = nn.Conv2d(cin, c.features, c.kernel, c.stride, c.padding)
        mods["relu" + c.name[4:]] = nn.ReLU()
        if c.pool:
            mods[c.pool_name] = nn.MaxPool2d(arch.pool_window, arch.pool_stride, ceil_mode=arch.pool_ceil)
            if c.lcn and arch.lcn:
                mods["norm" + c.name[4:]] = LrnSkipped() if lcn_backward == "identity" else nn.LocalResponseNorm(
                    arch.lcn_size, arch.lcn_alpha * arch.lcn_size, arch.lcn_beta, arch.lcn_k)
        cin = c.features
    mods["flatten"] = nn.Flatten()
    fan = models.param_shapes(arch)
    for f in arch.fcs:
        mods[f.name] = nn.Linear(*fan[f.name]["w"])
        mods["relu" + f.name[2:]] = nn.ReLU()
        mods["drop" + f.name[2:]] = nn.Dropout(f.dropout)
    mods["fc8"] = nn.Linear(*fan["fc8"]["w"])
    net = nn.Sequential(collections.OrderedDict(mods))
    net.load_state_dict(state, strict=True)
    if upto is not None:  # the layer's last module: a conv's ReLU, a pool's LRN where it has one
        own = {upto, ("relu" if upto.startswith("conv") else "norm") + upto[4:]}
        net = net[:max(i for i, name in enumerate(mods) if name in own) + 1]
    return net.eval()


def channels_last(obj):
    """A channels-last copy of a torch module or 4-D tensor (torch's faster layout for some convolutions)."""
    torch = setup_torch()
    if isinstance(obj, torch.Tensor):
        return obj.contiguous(memory_format=torch.channels_last)
    return copy.deepcopy(obj).to(memory_format=torch.channels_last)


def to_nchw(x) -> "torch.Tensor":  # noqa: F821
    """A zfjax NHWC batch as a contiguous NCHW torch tensor."""
    torch = setup_torch()
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()


def max_rel_err(got, ref) -> float:
    """max |got - ref| / max |ref|: the agreement measure of every benchmark."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call (the callable must block until its result is ready)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Rounds(NamedTuple):
    """Seconds of every ABAB round: zfjax, the reference, any further callables; and the machine's peak over the same
    rounds (`benchmarks.roofline.peak_probe`, timed once per round: the median rate, at the rounds' own load)."""
    zfjax: list[float]
    reference: list[float]
    more: tuple[list[float], ...]
    peak_gflops: float


def abab(zfjax_fn: Callable[[], object], reference_fn: Callable[[], object], rounds: int,
         *more: Callable[[], object]) -> Rounds:
    """Alternate zfjax, the reference, the `more` callables and the peak probe, `rounds` times each."""
    from benchmarks import roofline
    probe, probe_gflop = roofline.peak_probe()
    times: tuple[list, ...] = tuple([] for _ in range(3 + len(more)))
    for _ in range(rounds):
        for fn, out in zip((zfjax_fn, reference_fn, *more, probe), times):
            out.append(timed(fn))
    return Rounds(times[0], times[1], times[2:-1], probe_gflop / statistics.median(times[-1]))


class Reference(NamedTuple):
    """The reference's fastest form: its name and callable, every candidate's seconds (None: its output disagreed
    with zfjax's, so it is not a fair form), and the relative difference of the chosen form's output."""
    name: str
    fn: Callable[[], object]
    seconds: dict[str, float | None]
    err: float


def fastest(forms: dict[str, Callable[[], object]], ours, tol: float, tries: int = 2) -> Reference:
    """Warm up every candidate form of the reference, check its output against zfjax's `ours` (within `tol`; None:
    no check), time each that agrees `tries` times and pick the least time (the first form if none agrees)."""
    seconds, errs = {}, {}
    for name, fn in forms.items():
        out = fn()
        errs[name] = 0.0 if ours is None else max_rel_err(ours, out)
        seconds[name] = min(timed(fn) for _ in range(tries)) if errs[name] <= tol else None
        print(f"reference form {name!r}: " + (f"{seconds[name]:.4f} s" if seconds[name] is not None else
                                              f"disagrees ({errs[name]:.1e})"), flush=True)
    timed_forms = [name for name in forms if seconds[name] is not None] or list(forms)[:1]
    best = min(timed_forms, key=lambda name: seconds[name] or 0.0)
    return Reference(best, forms[best], seconds, errs[best])


def report(name: str, rounds: Rounds, agree: bool, *, compile_s: float, err: float, gflop: float,
           **extra) -> dict:
    """Print the table and the roofline and, last, the JSON line; return the JSON object.

    `gflop` is the arithmetic the work needs (`benchmarks.roofline`); "peak_fraction" is zfjax's achieved GFLOP/s
    over the peak measured in the same rounds.
    """
    za, rb, peak = statistics.median(rounds.zfjax), statistics.median(rounds.reference), rounds.peak_gflops
    print(f"{'':10} {'median s':>10} {'min s':>10} {'rounds':>7}")
    print(f"{'zfjax':10} {za:10.4f} {min(rounds.zfjax):10.4f} {len(rounds.zfjax):7d}   (compile {compile_s:.2f} s)")
    print(f"{'reference':10} {rb:10.4f} {min(rounds.reference):10.4f} {len(rounds.reference):7d}")
    print(f"max relative difference {err:.2e}; ratio reference/zfjax = {rb / za:.2f}x")
    print(f"arithmetic {gflop:.2f} GFLOP: zfjax {gflop / za:.1f} GFLOP/s = {gflop / za / peak:.0%} of the measured "
          f"peak {peak:.0f} GFLOP/s (load {os.getloadavg()[0]:.1f})")
    out = {"benchmark": name, "zfjax_s": za, "reference_s": rb, "ratio": rb / za, "agree": bool(agree),
           "max_rel_err": err, "compile_s": compile_s, "gflop": gflop, "gflops": gflop / za,
           "peak_fraction": gflop / za / peak, "peak_gflops": peak, "load": os.getloadavg()[0], **extra}
    print(json.dumps(out))
    return out
