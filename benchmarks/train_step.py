"""One SGD step (momentum 0.9, dropout, filter renormalization): `zfjax.training.train.train_step` vs the same torch step.

Reports images/s of ZFNet (224x224, batch 32; ``--quick`` too: about 15 s) and of the small net (28x28x1,
batch 128); the JSON ratio is torch's time over zfjax's for ZFNet (the slower and reported case), the small
net's ratio is an extra field. Agreement: the test-mode loss of both networks on the batch, same weights. The torch
step gets its fastest form (`common.fastest`): NCHW or channels-last.
Usage: ``python -m benchmarks.train_step [--quick] [--rounds 5]``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common, roofline
from zfjax.network import models
from zfjax.training import train

LR, MOMENTUM, RADIUS = 0.01, 0.9, 0.1


def torch_step_fn(net, x, y):
    """The torch twin's SGD step (momentum, dropout, renormalization) on batch (x, y); returns the loss."""
    torch = common.setup_torch()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for m in convs:  # the paper's renormalization: filters with RMS above RADIUS scaled back to it
                rms = m.weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                m.weight.mul_(torch.where(rms > RADIUS, RADIUS / rms, torch.ones_like(rms)))
        return float(loss)
    return torch_step


def setup(name: str, size: int, batch: int):
    """Arch, zfjax state and step, batch, the torch twin's fastest step (the same work) and its name."""
    torch = common.setup_torch()
    if name == "zfnet":
        arch = models.get("zfnet", init="fan_in", input_shape=(size, size, 3))
    else:
        arch = models.get("small")
    tx = optax.sgd(LR, momentum=MOMENTUM)
    state = train.create_state(arch, tx, 0)
    images = np.asarray(jax.random.uniform(jax.random.key(1), (batch, *arch.input_shape), minval=-1, maxval=1))
    labels = np.asarray(jax.random.randint(jax.random.key(2), (batch,), 0, arch.num_classes))
    step = jax.jit(functools.partial(train.train_step, arch=arch, tx=tx, radius=RADIUS), donate_argnums=0)
    net = common.torch_net(arch, jax.device_get(state.params))
    x, y = common.to_nchw(images), torch.tensor(labels, dtype=torch.long)
    with torch.no_grad():  # agreement: the same network in test mode (the steps' dropout masks differ)
        ref = float(torch.nn.functional.cross_entropy(net(x), y))
    forms = {"NCHW": torch_step_fn(net, x, y),
             "channels-last": torch_step_fn(common.channels_last(net), common.channels_last(x), y)}
    fast = common.fastest(forms, None, 0.0)
    logits = jax.jit(lambda p, x: models.apply(arch, p, x).logits)(state.params, jnp.asarray(images))
    err = abs(float(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels)).mean()) - ref) / ref
    return state, step, {"image": jnp.asarray(images), "label": jnp.asarray(labels)}, fast.fn, err, fast.name


def bench_one(name: str, size: int, batch: int, rounds: int) -> tuple[common.Rounds, float, float, str]:
    """(ABAB rounds, compile seconds, test-mode losses' relative difference, torch's form)."""
    state, step, data, torch_step, err, form = setup(name, size, batch)
    holder = {"state": state}

    def ours():
        holder["state"], metrics = step(holder["state"], data)
        return float(metrics["loss"])

    compile_s = common.timed(lambda: jax.block_until_ready(step.lower(state, data).compile()))
    ours(), torch_step()
    return common.abab(ours, torch_step, rounds), compile_s, err, form


def bench(size: int, batch: int, rounds: int) -> dict:
    small, small_compile, small_err, small_form = bench_one("small", 28, 128, rounds)
    zf, compile_s, zf_err, form = bench_one("zfnet", size, batch, rounds)
    med = lambda v: float(np.median(v))  # noqa: E731
    extra = {"zfnet_images_per_s": batch / med(zf.zfjax), "torch_zfnet_images_per_s": batch / med(zf.reference),
             "small_images_per_s": 128 / med(small.zfjax), "torch_small_images_per_s": 128 / med(small.reference),
             "small_ratio": med(small.reference) / med(small.zfjax), "small_zfjax_s": med(small.zfjax),
             "small_reference_s": med(small.reference), "small_compile_s": small_compile, "size": size,
             "batch": batch, "reference_form": form, "small_reference_form": small_form,
             "small_gflop": roofline.gflop(128 * roofline.train_macs(models.get("small"))),
             "small_peak_gflops": small.peak_gflops}
    print(f"small net: zfjax {extra['small_images_per_s']:.0f} images/s, torch "
          f"{extra['torch_small_images_per_s']:.0f} images/s (ratio {extra['small_ratio']:.2f}x)")
    err = max(zf_err, small_err)
    arch = models.get("zfnet", input_shape=(size, size, 3))
    return common.report("train_step", zf, err <= 1e-4, compile_s=compile_s, err=err,
                         gflop=roofline.gflop(batch * roofline.train_macs(arch)), **extra)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--size", type=int, default=224, help="ZFNet image side")
    parser.add_argument("--batch", type=int, default=32, help="ZFNet batch")
    args = parser.parse_args()
    bench(args.size, args.batch, args.rounds or 5)


if __name__ == "__main__":
    main()
