"""Projections of a model zfjax does not know: a Flax linen VGG-11 conv stack (conv1 .. conv5_2, 224x224), 32
units of conv5_2 of one image through the user's own ``jax.jit(jax.vmap(lambda c: deconv.project_fn(fn, x, c)))``,
vs Captum's NeuronDeconvolution per unit on the torch twin cut at conv5_2's ReLU (its fastest fair form: nothing
after the projected layer runs).

Usage: ``python -m benchmarks.any_model [--quick] [--rounds 5] [--size 224] [--count 32] [--crop auto|true|false]``
(``--crop false``: the whole-network VJP per unit, the plain transformation). The last line printed is the JSON
report (see `benchmarks.common.report`).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common, roofline
from benchmarks import deconv as bench_deconv
from zfjax import deconv
from zfjax.network import adapters

VGG11 = (("conv1", 64), "pool", ("conv2", 128), "pool", ("conv3_1", 256), ("conv3_2", 256), "pool",
         ("conv4_1", 512), ("conv4_2", 512), "pool", ("conv5_1", 512), ("conv5_2", 512))
"""VGG-11 (configuration A of Simonyan & Zisserman) up to its last conv: 3x3 convs, pad 1; 2x2/2 max pools."""


class Vgg11Convs(nn.Module):
    """The conv stack of VGG-11; each ReLU's output is sown as ``relu<k>`` (``relu5_2`` for ``conv5_2``)."""

    @nn.compact
    def __call__(self, x):
        for layer in VGG11:
            if layer == "pool":
                x = nn.max_pool(x, (2, 2), (2, 2))
            else:
                name, features = layer
                x = nn.relu(nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), name=name,
                                    kernel_init=nn.initializers.he_normal())(x))
                self.sow("intermediates", name.replace("conv", "relu"), x)
        return x


def torch_twin(params):
    """The same conv stack in torch (NCHW, nn.ReLU modules for Captum); the index of each conv's ReLU in it."""
    torch = common.setup_torch()
    mods, relus, cin = [], {}, 3
    for layer in VGG11:
        if layer == "pool":
            mods.append(torch.nn.MaxPool2d(2, 2))
            continue
        name, features = layer
        conv = torch.nn.Conv2d(cin, features, 3, padding=1)
        conv.weight.data = torch.tensor(np.asarray(params[name]["kernel"]).transpose(3, 2, 0, 1))
        conv.bias.data = torch.tensor(np.asarray(params[name]["bias"]))
        mods += [conv, torch.nn.ReLU()]
        relus[name] = len(mods) - 1
        cin = features
    return torch.nn.Sequential(*mods).eval(), relus


def reference_forms(net, relu: int, x, count: int) -> dict[str, functools.partial]:
    """Captum's candidate forms on the twin (which ends at the projected ReLU, module `relu`): NCHW or
    channels-last, one call per unit or per `bench_deconv.COPIES` copies of the image."""
    forms = {}
    for name, (m, xx) in {"twin": (net, x), "twin, channels-last": (common.channels_last(net),
                                                                   common.channels_last(x))}.items():
        units = functools.partial(bench_deconv.captum_units, m, xx, range(count), relu=m[relu], maps=m)
        forms[f"{name}, one call per unit"] = units
        forms[f"{name}, {bench_deconv.COPIES} copies per call"] = functools.partial(units, copies=bench_deconv.COPIES)
    return forms


def arithmetic(size: int, count: int, layer: str = "conv5_2") -> float:
    """GFLOP the work needs: the forward to `layer` once, and each unit's transposed convs over its receptive-field
    cone (the window of the conv's output a unit of `layer` reads; the whole map when that is smaller)."""
    convs, side, cin = [], size, 3  # (output side, multiply-adds per output position) per conv, forward order
    for item in VGG11[:VGG11.index(next(v for v in VGG11 if v != "pool" and v[0] == layer)) + 1]:
        if item == "pool":
            convs.append(("pool", side))
            side //= 2
        else:
            convs.append((side, 9 * cin * item[1]))
            cin = item[1]
    forward = sum(s * s * per for s, per in convs if s != "pool")
    cone, window = 0, 1
    for s, per in reversed(convs):
        if s == "pool":
            window = min(2 * window, per)
        else:
            cone += window * window * per
            window = min(window + 2, s)
    return roofline.gflop(forward + count * min(cone, forward))


def bench(count: int, rounds: int, size: int = 224, crop="auto", layer: str = "conv5_2") -> dict:
    """Pick the reference's fastest form, check agreement, warm up, ABAB."""
    model = Vgg11Convs()
    x = jax.random.uniform(jax.random.key(1), (1, size, size, 3), minval=-1.0, maxval=1.0)
    variables = model.init(jax.random.key(0), x)
    features, variables = adapters.features(model, layer.replace("conv", "relu"), variables)
    # the user's function; weights and image are jit arguments (closed over, XLA would fold the forward into
    # constants at compile time)
    user = jax.jit(jax.vmap(lambda v, x, c: deconv.project_fn(lambda x: features(v, x), x, c, crop=crop)[0],
                            in_axes=(None, None, 0)))
    channels = jnp.arange(count)
    ours = lambda: jax.block_until_ready(user(variables, x, channels))  # noqa: E731
    compile_s = common.warm(ours)
    out = np.asarray(ours())
    net, relus = torch_twin(variables["params"])
    ref = common.fastest(reference_forms(net, relus[layer], common.to_nchw(x), count), out, bench_deconv.TOL)
    timing = common.abab(ours, ref.fn, rounds)
    return common.report("any_model_units32", timing, ref.err <= bench_deconv.TOL, compile_s=compile_s, err=ref.err,
                         gflop=arithmetic(size, count, layer), count=count, size=size, crop=str(crop),
                         reference_form=ref.name, reference_forms=ref.seconds)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--count", type=int, default=32, help="conv5_2 units (channels) projected")
    parser.add_argument("--size", type=int, default=224, help="image side (224 for reported numbers)")
    parser.add_argument("--crop", choices=("auto", "true", "false"), default="auto")
    args = parser.parse_args()
    common.setup_torch()
    crop = {"auto": "auto", "true": True, "false": False}[args.crop]
    bench(args.count, args.rounds or (3 if args.quick else 5), args.size, crop)


if __name__ == "__main__":
    main()
