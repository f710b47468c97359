"""Per-layer profile of ZFNet: time of each stage (conv+ReLU, pool+LCN, the fc head) in zfjax and in torch.

Three columns per side: the forward at batch B, the train step's forward+backward (input and weight gradients) at
batch B, and the projection's backward of 32 conv5 units (zfjax: the VJP on each unit's receptive-field window,
vmapped over the units, as `deconv.project` runs it; torch/Captum: the input gradient of the full map, once per
unit). The slowest zfjax/torch ratio names the layer that limits a benchmark.
Usage: ``python -m benchmarks.profile [--quick]``; prints a markdown table and a JSON last line.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from zfjax import deconv, models

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


def profile(size: int, batch: int, rounds: int) -> list[dict]:
    torch = common.setup_torch()
    arch, params, images, net = common.zfnet(size, batch)
    fwd = models.apply(arch, params, images)
    cones = deconv._cones(arch, "conv5", (size, size))
    ops = deconv.backward_ops("deconvnet", "gradient")
    rows = []
    for cone in cones:
        st = cone.stage
        x = images if st.source is None else fwd.acts[st.source]
        pad = cone.stage.pad
        xin = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf if st.pool else 0.0)
        p = {n: v for n, v in params.items() if n == st.name}
        stage = lambda p, x, st=st, cone=cone: jax.vmap(  # noqa: E731
            lambda w: deconv._stage(arch, {**params, **p}, ops, cone, jnp.zeros(2, jnp.int32), w))(x)
        f = jax.jit(stage)
        fb = jax.jit(lambda p, x, f=stage: jax.grad(lambda p, x: jnp.sum(f(p, x) ** 2), argnums=(0, 1))(p, x))
        canvas = deconv._canvas(cone, x[:1])[0]  # with the margins a unit's window may need
        win = jnp.broadcast_to(canvas[:cone.length[0], :cone.length[1]], (UNITS, *cone.length, canvas.shape[2]))
        proj = jax.jit(lambda p, w, f=stage: jax.vjp(lambda w: f(p, w), w)[1](f(p, w))[0])
        mod = _torch_stage(net, torch, st.name)
        xt = common.to_nchw(x)
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
               "zfjax_projection_s": _median(lambda: jax.block_until_ready(proj(p, win)), rounds),
               "torch_projection_s": _median(t_proj, rounds)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: seconds per layer and the torch/zfjax ratio of each column (< 1: zfjax is slower there)."""
    out = ["| layer | forward zfjax / torch s | train zfjax / torch s | projection (32 units) zfjax / torch s |",
           "|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[f'zfjax_{k}_s']:.4f} / {r[f'torch_{k}_s']:.4f} ({r[f'torch_{k}_s'] / r[f'zfjax_{k}_s']:.1f}x)"
                 for k in ("forward", "train", "projection")]
        out.append(f"| {r['layer']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    args = common.parser(__doc__).parse_args()
    size, batch = (112, 8) if args.quick else (224, 32)
    rows = profile(size, batch, args.rounds or (3 if args.quick else 5))
    print(table(rows))
    slowest = min(rows, key=lambda r: r["torch_train_s"] / r["zfjax_train_s"])
    print(json.dumps({"benchmark": "profile", "size": size, "batch": batch, "layers": rows,
                      "slowest_train_layer": slowest["layer"]}))


if __name__ == "__main__":
    main()
