"""Per-layer profile of ZFNet: time of each stage (conv+ReLU, pool+LCN, the fc head) in zfjax and in torch.

Three columns per side: the forward at batch B, the train step's forward+backward (input and weight gradients) at
batch B, and the projection's backward of 32 conv5 units (zfjax: the VJP on each unit's receptive-field window,
vmapped over the units, as `deconv.project` runs it; torch/Captum: the input gradient of the full map, once per
unit). The slowest zfjax/torch ratio names the layer that limits a benchmark. A fourth column times a conv stage's
transposed convolution alone on the 32 windows (`layers.conv_transpose_units`); with the forward of one image to
conv5 it gives the projection's floor: what 32 units would take if unpooling, normalization, the ReLU rule,
window slicing and placement were free.
Usage: ``python -m benchmarks.profile [--quick] [--arch zfnet|small] [--size S] [--batch B]`` (``--arch small``:
28x28, batch 128, the small net's train step); prints a markdown table and a JSON last line.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from zfjax import deconv
from zfjax.network import layers, models
from zfjax.network import receptive_field as rf

UNITS = 32


def _median(fn, rounds: int) -> float:
    fn()
    return float(np.median([common.timed(fn) for _ in range(rounds)]))


def _torch_stage(net, torch, name: str):
    """The torch modules of stage `name` (conv+relu or pool+norm) as one callable."""
    names = list(dict(net.named_children()))
    i = names.index(name)
    j = i + 1
    while j < len(names) and names[j].startswith(("relu", "norm")):
        j += 1
    return net[i:j]


def _stage_forward(arch: models.Arch, p: models.Params, st, x: jax.Array) -> jax.Array:
    """One stage's forward on a batch, as `models.apply` runs it: conv + ReLU, or max pool (+ LCN)."""
    return rf.run_stage(arch, p, st, x, padding=st.pad, ceil_mode=arch.pool_ceil)


def profile(size: int, batch: int, rounds: int, name: str = "zfnet") -> tuple[list[dict], float]:
    """The per-stage rows, and the seconds of the forward of one image to conv5 (as a projection runs it)."""
    torch = common.setup_torch()
    arch, params, images, net = common.zfnet(size, batch, name=name)
    fwd = models.apply(arch, params, images)
    cones = deconv.cone_stages(arch, "conv5", (size, size))
    ops = deconv.backward_ops("deconvnet", "gradient")
    saved = deconv.saved_forward(arch, ops, cones, jax.tree.map(lambda a: a[:1], fwd))
    rows = []
    for i, cone in enumerate(cones):
        st = cone.stage
        xin = images if st.source is None else fwd.acts[st.source]
        p = {st.name: params[st.name]} if st.name in params else {}
        f = jax.jit(lambda p, x, st=st: _stage_forward(arch, p, st, x))
        fb = jax.jit(lambda p, x, f=f: jax.grad(lambda p, x: jnp.sum(f(p, x) ** 2), argnums=(0, 1))(p, x))
        out_len = tuple((n - st.kernel) // st.stride + 1 for n in cone.length)  # the stage's output window
        here = jax.tree.map(lambda m: m[0, :out_len[0], :out_len[1]], saved[i])  # a unit's window of the forward
        g = jnp.ones((UNITS, *out_len, jax.tree.leaves(here)[0].shape[-1]), jnp.float32)
        proj = jax.jit(jax.vmap(lambda g, p, here=here, cone=cone: deconv.stage_backward(
            arch, {**params, **p}, ops, cone, jnp.zeros(2, jnp.int32), here, g), in_axes=(0, None)))
        transpose = None if st.pool else jax.jit(lambda g, p, st=st, cone=cone: layers.conv_transpose_units(
            g, p[st.name]["w"], st.stride, 0, cone.length))
        mod = _torch_stage(net, torch, st.name)
        xt = common.to_nchw(xin)
        xt1 = xt[:1].clone().requires_grad_(True)

        def t_fwd():
            with torch.no_grad():
                mod(xt)

        def t_fb():
            xg = xt.clone().requires_grad_(True)
            (mod(xg) ** 2).sum().backward()

        def t_proj():
            for _ in range(UNITS):
                out = mod(xt1)
                torch.autograd.grad(out, xt1, out.detach())

        row = {"layer": st.name,
               "zfjax_forward_s": _median(lambda: jax.block_until_ready(f(p, xin)), rounds),
               "torch_forward_s": _median(t_fwd, rounds),
               "zfjax_train_s": _median(lambda: jax.block_until_ready(fb(p, xin)), rounds),
               "torch_train_s": _median(t_fb, rounds),
               "zfjax_projection_s": _median(lambda: jax.block_until_ready(proj(g, p)), rounds),
               "torch_projection_s": _median(t_proj, rounds),
               "zfjax_transpose_s": None if transpose is None else
               _median(lambda: jax.block_until_ready(transpose(g, p)), rounds)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    one = jax.jit(lambda p, x: models.apply(arch, p, x, upto="conv5").acts["conv5"])
    return rows, _median(lambda: jax.block_until_ready(one(params, images[:1])), rounds)


def table(rows: list[dict]) -> str:
    """Markdown: seconds per layer and the torch/zfjax ratio of each column (< 1: zfjax is slower there)."""
    out = ["| layer | forward zfjax / torch s | train zfjax / torch s | projection (32 units) zfjax / torch s "
           "| its transposed conv alone s |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[f'zfjax_{k}_s']:.4f} / {r[f'torch_{k}_s']:.4f} ({r[f'torch_{k}_s'] / r[f'zfjax_{k}_s']:.1f}x)"
                 for k in ("forward", "train", "projection")]
        cells.append("-" if r["zfjax_transpose_s"] is None else f"{r['zfjax_transpose_s']:.4f}")
        out.append(f"| {r['layer']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def projection_floor(rows: list[dict], forward_s: float) -> float:
    """The 32-unit projection's floor: the forward of one image plus every stage's transposed convolution alone."""
    return forward_s + sum(r["zfjax_transpose_s"] or 0.0 for r in rows)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--arch", choices=("zfnet", "small"), default="zfnet")
    parser.add_argument("--size", type=int, default=None, help="image side (zfnet 224, quick 112; small 28)")
    parser.add_argument("--batch", type=int, default=None, help="batch (zfnet 32, quick 8; small 128)")
    args = parser.parse_args()
    size, batch = (28, 128) if args.arch == "small" else (112, 8) if args.quick else (224, 32)
    size, batch = args.size or size, args.batch or batch
    rounds = args.rounds or (3 if args.quick else 5)
    rows, forward = profile(size, batch, rounds, args.arch)
    floor = projection_floor(rows, forward)
    print(table(rows))
    print(f"\nprojection floor: the forward of one image to conv5 ({forward:.4f} s) + the transposed convolutions "
          f"alone = {floor:.4f} s for {UNITS} units")
    slowest = min(rows, key=lambda r: r["torch_train_s"] / r["zfjax_train_s"])
    print(json.dumps({"benchmark": "profile", "arch": args.arch, "size": size, "batch": batch, "layers": rows,
                      "slowest_train_layer": slowest["layer"], "one_image_forward_s": forward,
                      "projection_floor_s": floor}))


if __name__ == "__main__":
    main()
