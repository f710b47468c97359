"""The benchmarks' GPU-capable parts on an accelerator: zfjax absolute times, and torch CUDA beside them if present.

Prints one JSON line per measurement (median of `--rounds` after a warm-up): deconv_units32 and deconv_batch
(zfjax; Captum on CUDA when importable), topk_scan (512 images), and ZFNet training throughput (batch 128,
float32 and bfloat16, synthetic data) for zfjax and for the torch twin. Usage: ``python -m benchmarks.gpu``.
"""
from __future__ import annotations

import functools
import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common, deconv as bench_deconv
from zfjax.analyses import topk
from zfjax.network import models
from zfjax.training.renormalize import renormalize


def _median(fn, rounds: int) -> tuple[float, float]:
    """(first call seconds, median seconds of the next `rounds`)."""
    first = common.timed(fn)
    return first, statistics.median(common.timed(fn) for _ in range(rounds))


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def _train_step(arch, tx, dtype):
    """`zfjax.training.train.train_step` (jitted); where its data stack (grain) is missing, the same SGD step inline."""
    try:
        from zfjax.training import train
        return jax.jit(functools.partial(train.train_step, arch=arch, tx=tx, radius=0.1, dtype=dtype),
                       donate_argnums=0), train.create_state(arch, tx, 0)
    except ImportError:
        params = models.init(arch, jax.random.key(0))

        def step(state, batch):
            params, opt = state

            def loss_fn(p):
                cast = jax.tree.map(lambda a: a.astype(dtype), p)
                logits = models.apply(arch, cast, batch["image"].astype(dtype)).logits.astype(jnp.float32)
                return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt = tx.update(grads, opt, params)
            return (renormalize(optax.apply_updates(params, updates), 0.1), opt), {"loss": loss}
        return jax.jit(step, donate_argnums=0), (params, tx.init(params))


def zfjax_parts(size: int, batch: int, images_n: int, rounds: int) -> None:
    arch, params, images, _ = common.zfnet(size, 32, twin=False)
    for mode, count in (("units", 32), ("batch", 32)):
        fn = bench_deconv.zfjax_fn(mode, arch, params, images if mode == "batch" else images[:1], count)
        c, t = _median(fn, rounds)
        emit(benchmark=bench_deconv.NAMES[mode], zfjax_s=t, compile_s=c)
    data = np.asarray(jax.random.uniform(jax.random.key(3), (images_n, size, size, 3)))
    scan = lambda: topk.scan(arch, params, (data[i:i + 64] for i in range(0, images_n, 64)), layer="conv5")  # noqa
    c, t = _median(scan, rounds)
    emit(benchmark="topk_scan", images=images_n, zfjax_s=t, compile_s=c)
    for dtype in (jnp.float32, jnp.bfloat16):
        tx = optax.sgd(0.01, momentum=0.9)
        step, state = _train_step(arch, tx, dtype)
        b = {"image": jax.random.uniform(jax.random.key(4), (batch, size, size, 3)),
             "label": jnp.zeros((batch,), jnp.int32)}
        holder = {"s": state}

        def run(steps=10):
            for _ in range(steps):
                holder["s"], m = step(holder["s"], b)
            jax.block_until_ready(m["loss"])
        c, t = _median(run, rounds)
        emit(benchmark="train_step", dtype=jnp.dtype(dtype).name, batch=batch, zfjax_images_per_s=10 * batch / t,
             compile_s=c)


def torch_parts(size: int, batch: int, rounds: int) -> None:
    try:
        torch = common.setup_torch()
    except ImportError:
        emit(torch="not installed")
        return
    emit(torch=torch.__version__, cuda=torch.cuda.is_available(),
         gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    if not torch.cuda.is_available():
        return
    arch, params, images, net = common.zfnet(size, 32)
    net = net.cuda().train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, size, size, device="cuda")
    y = torch.zeros(batch, dtype=torch.long, device="cuda")
    for dtype in (torch.float32, torch.bfloat16):
        def run(steps=10):
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
            torch.cuda.synchronize()
        c, t = _median(run, rounds)
        emit(benchmark="train_step", dtype=str(dtype), batch=batch, torch_images_per_s=10 * batch / t)
    try:
        import captum  # noqa: F401
    except ImportError:
        emit(captum="not importable")
        return
    net = net.eval()
    xc = common.to_nchw(images).cuda()
    for mode in ("units", "batch"):
        def ref():
            if mode == "units":
                _captum_units_cuda(net, xc[:1])
            else:
                _captum_batch_cuda(net, xc)
            torch.cuda.synchronize()
        c, t = _median(ref, rounds)
        emit(benchmark=bench_deconv.NAMES[mode], captum_cuda_s=t)


def _captum_units_cuda(net, x):
    from captum.attr import NeuronDeconvolution
    attr = NeuronDeconvolution(net, net.relu5)
    return [attr.attribute(x, neuron_selector=(c, 3, 3)) for c in range(32)]


def _captum_batch_cuda(net, x):
    from captum.attr import NeuronDeconvolution
    return NeuronDeconvolution(net, net.relu5).attribute(x, neuron_selector=lambda o: o[:, 7].flatten(1).max(1).values)


def main() -> None:
    args = common.parser(__doc__).parse_args()
    size, batch, n = (64, 8, 64) if args.quick else (224, 128, 512)
    emit(device=str(jax.devices()[0]), jax=jax.__version__)
    zfjax_parts(size, batch, n, args.rounds or 3)
    torch_parts(size, batch, args.rounds or 3)


if __name__ == "__main__":
    main()
