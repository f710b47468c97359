"""Cold start: a fresh Python process that imports the library, loads ZFNet weights and projects one conv5 unit.

Wall clock of the whole child process, zfjax (with JAX's persistent compilation cache, parameters as `jit`
arguments) vs torch + Captum (NeuronDeconvolution), both reading the same weights (.npz) and image; the children
save their projections and the parent checks that they agree. The target is zfjax <= 1.5x Captum's time, so the
JSON ratio (Captum / zfjax) should be >= 0.67. Usage: ``python -m benchmarks.cold_start [--quick] [--size 224]``.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHANNEL = 7


def child_zfjax(work: pathlib.Path, size: int) -> None:
    """Import zfjax, load the weights, project the strongest unit of conv5 channel CHANNEL; save it."""
    import jax
    from benchmarks.common import CACHE
    from zfjax import compile_cache, deconv
    from zfjax.network import models
    compile_cache.use(CACHE)
    arch = models.get("zfnet", input_shape=(size, size, 3))
    data = np.load(work / "weights.npz")
    params = {k.split("/")[0]: {} for k in data.files}
    for k in data.files:
        params[k.split("/")[0]][k.split("/")[1]] = data[k]
    project = jax.jit(deconv.project, static_argnames=("arch", "layer", "rule", "lcn_rule"))
    out = project(arch, params, np.load(work / "image.npy"), "conv5", CHANNEL, lcn_rule="gradient")
    np.save(work / "zfjax.npy", np.asarray(out[0]))


def child_captum(work: pathlib.Path, size: int) -> None:
    """Import torch + Captum, build the twin from the same weights, project the same unit on the twin cut after
relu5 (Captum's fastest form); save it."""
    from benchmarks import deconv as bench_deconv
    from zfjax.network import models
    arch = models.get("zfnet", input_shape=(size, size, 3))
    data = np.load(work / "weights.npz")
    params = {k.split("/")[0]: {} for k in data.files}
    for k in data.files:
        params[k.split("/")[0]][k.split("/")[1]] = data[k]
    net = common.torch_net(arch, params)
    x = common.to_nchw(np.load(work / "image.npy"))
    np.save(work / "captum.npy", bench_deconv.captum_batch(bench_deconv.cut(net), x, CHANNEL)[0])


def run_child(which: str, work: pathlib.Path, size: int) -> float:
    """Wall seconds of one fresh child process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "benchmarks.cold_start", "--child", which, "--work", str(work), "--size", str(size)]
    return common.timed(lambda: subprocess.run(cmd, check=True, env=env, cwd=ROOT))


def bench(size: int, rounds: int) -> dict:
    import jax
    from benchmarks import deconv as bench_deconv
    from zfjax.network import models
    arch, params, images, _ = common.zfnet(size, 1)
    gflop = bench_deconv.arithmetic(arch, "batch", 1)  # the one projection; the rest of the wall clock is start-up
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        np.savez(work / "weights.npz", **{f"{n}/{k}": np.asarray(v) for n, p in params.items() for k, v in p.items()})
        np.save(work / "image.npy", np.asarray(images))
        del arch, models, jax, bench_deconv
        compile_s = run_child("zfjax", work, size)  # fills the persistent cache (a user's first ever run)
        run_child("captum", work, size)
        err = common.max_rel_err(np.load(work / "zfjax.npy"), np.load(work / "captum.npy"))
        timing = common.abab(lambda: run_child("zfjax", work, size), lambda: run_child("captum", work, size), rounds)
    return common.report("cold_start", timing, err <= 1e-4, compile_s=compile_s, err=err, gflop=gflop, size=size,
                         target_ratio=1 / 1.5)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--child", choices=("zfjax", "captum"))
    parser.add_argument("--work", type=pathlib.Path)
    args = parser.parse_args()
    size = args.size or (112 if args.quick else 224)
    if args.child:
        (child_zfjax if args.child == "zfjax" else child_captum)(args.work, size)
    else:
        bench(size, args.rounds or 5)


if __name__ == "__main__":
    main()
