"""The deconvnet (paper section 3): project one activation back to pixel space, as JAX transformation rules.

A projection is the VJP of ``x -> acts[layer]`` (`zfjax.network.models.apply` stopped at `layer`) applied to a cotangent that
is zero except for the chosen activation, which keeps its **value**. The backward rules are chosen by the `Ops` the
forward pass runs with, and that is the only difference between the three rules:

- ``"deconvnet"`` (the paper): ReLU's backward is ``max(g, 0)`` -- the reconstruction is rectified, whatever the sign
  of the forward input;
- ``"guided"`` (guided backpropagation): ``max(g, 0) * (x > 0)``;
- ``"saliency"``: the plain gradient ``g * (x > 0)``.

In all three, max pooling is `layers.max_pool`, whose VJP is the paper's unpooling with the switches, and each
convolution's VJP with respect to its input is the transposed convolution (the flipped filters). The VJP with
respect to the input never touches the biases, so biases are unused on the way back, as in the paper. ``lcn_rule``
is ``"identity"`` (LCN is skipped on the way back) or ``"gradient"`` (its true gradient).

A unit whose activation is zero (or a channel that is zero everywhere) projects to exact zeros, never NaN: every
backward rule is linear in the cotangent. `project_many` reports the values so callers can tell.

`zfjax.deconv.reference.project_reference` computes the same projections the way the paper describes them; tests
check that both agree.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from zfjax.deconv import rules, units
from zfjax.deconv.cone import in_range, place
from zfjax.network import layers, models
from zfjax.network import receptive_field as rf
from zfjax.deconv.units import Projections

Array = jax.Array
LCN_RULES = ("identity", "gradient")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def lcn_skipped_backward(x: Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75) -> Array:
    """`layers.lcn` forward, identity backward: the deconvnet passes reconstructions through LCN unchanged."""
    return layers.lcn(x, size, k, alpha, beta)


def _lcn_fwd(x, size, k, alpha, beta):
    return layers.lcn(x, size, k, alpha, beta), None


def _lcn_identity_bwd(size, k, alpha, beta, _, g):
    return (g,)


lcn_skipped_backward.defvjp(_lcn_fwd, _lcn_identity_bwd)

_LCNS = {"identity": lcn_skipped_backward, "gradient": layers.lcn}


def backward_ops(rule: str = "deconvnet", lcn_rule: str = "identity") -> layers.Ops:
    """The `layers.Ops` whose VJPs implement `rule` and `lcn_rule` (the one place the rules are chosen)."""
    rules.check(rule)
    if lcn_rule not in LCN_RULES:
        raise ValueError(f"unknown lcn_rule {lcn_rule!r}; choose one of {LCN_RULES}")
    return layers.Ops(relu=rules.RELUS[rule], max_pool=layers.max_pool, lcn=_LCNS[lcn_rule])


def projectable_layers(arch: models.Arch) -> tuple[str, ...]:
    """Layers whose units can be projected: every conv (post-ReLU) and pool (post-LCN) map, in forward order."""
    return tuple(n for n in arch.layer_names if n.startswith(("conv", "pool")))


def check_layer(arch: models.Arch, layer: str) -> None:
    """ValueError unless `layer` is one of `projectable_layers` of `arch`."""
    models.check_layer(arch, layer, projectable_layers(arch), problem=f"cannot project from layer {layer!r}")


def _forward(arch, params, x, layer, rule, lcn_rule):
    """`(acts[layer], pullback)`: the forward pass stopped at `layer`, run with the Ops of the backward rule."""
    check_layer(arch, layer)
    ops = backward_ops(rule, lcn_rule)
    return jax.vjp(lambda x: models.apply(arch, params, x, upto=layer, ops=ops).acts[layer], x)


class Cone(NamedTuple):
    """Static shape of a unit's backward cone at one stage: its input window and the margins its source map needs."""
    stage: rf.Stage
    length: tuple[int, int]  # input window (rows, cols)
    before: tuple[int, int]  # zero/-inf margin above/left of the source map, so every window lies inside
    after: tuple[int, int]
    source_hw: tuple[int, int]  # the source map's (H, W)
    out_hw: tuple[int, int]  # the stage's output map (H, W)


def cone_stages(arch: models.Arch, layer: str, input_hw: tuple[int, int]) -> tuple[Cone, ...]:
    """The stages up to `layer`, each with the fixed window a single unit of `layer` reads through it (the geometry
    of the cropped projection; `benchmarks.roofline` counts its multiply-adds from it)."""
    stages = rf.stages(arch)  # the conv and pool steps, shared with occlusion
    stages = stages[:[st.name for st in stages].index(layer) + 1]
    shapes = dataclasses.replace(arch, input_shape=(*input_hw, arch.input_shape[2])).shapes()
    top_hw = shapes[layer][:2]
    out = []
    first, last, length = (0, 0), tuple(n - 1 for n in top_hw), (1, 1)  # the top unit's extreme starts, its size
    for st in reversed(stages):
        first, last = ([a * st.stride - st.pad for a in s] for s in (first, last))
        length = tuple((n - 1) * st.stride + st.kernel for n in length)
        source_hw = tuple(input_hw) if st.source is None else shapes[st.source][:2]
        out.append(Cone(st, length, tuple(max(0, -a) for a in first),
                         tuple(max(0, b + n - m) for b, n, m in zip(last, length, source_hw)), source_hw,
                         shapes[st.name][:2]))
    return tuple(reversed(out))


def _inside(start: Array, length: tuple[int, int], hw: tuple[int, int]) -> Array:
    """(rows, cols, 1) mask of the window at `start` that lies inside an (H, W) map."""
    return in_range(*(start[i] + jnp.arange(length[i]) for i in range(2)), hw)


def _out_margins(cones: tuple[Cone, ...], i: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Margins (before, after) of stage `i`'s output map: the next stage's input margins (none at the top)."""
    return (cones[i + 1].before, cones[i + 1].after) if i + 1 < len(cones) else ((0, 0), (0, 0))


def saved_forward(arch: models.Arch, ops: layers.Ops, cones: tuple[Cone, ...], fwd: models.Forward) -> tuple:
    """Per stage, what its backward needs from the shared forward, computed once for all units, padded by the margins:
    a conv's (post-ReLU) map; a pool's switches as window offsets (`ops.max_pool`) and, with LCN, the residuals of
    `ops.lcn`'s custom VJP (its `fwd`: maps of the pooled map's shape, so each unit slices its window of them)."""
    out = []
    for i, cone in enumerate(cones):
        st = cone.stage
        if st.pool:
            pooled, offset = ops.max_pool(fwd.acts[st.source], st.kernel, st.stride, arch.pool_ceil)
            maps = (offset, ops.lcn.fwd(pooled, *arch.lcn_params)[1] if st.lcn else None)
        else:
            maps = (fwd.acts[st.name],)
        out.append(jax.tree.map(lambda m: jnp.pad(m, ((0, 0), *zip(*_out_margins(cones, i)), (0, 0))), maps))
    return tuple(out)


class Pooled(NamedTuple):
    """A pool stage's signal left at the pool's output, with its window of the saved offsets: the conv stage below
    unpools it inside its transpose (`layers.conv_transpose_units`), so the unpooled maps are never written whole."""
    g: Array
    offset: Array
    window: int
    stride: int


def stage_backward(arch: models.Arch, params: models.Params, ops: layers.Ops, cone: Cone, out_start: Array,
                   saved: tuple, g: Array | Pooled, *, leave_pooled: bool = False) -> Array | Pooled:
    """One stage's backward on a unit's (h, w, C) window: the rule's VJPs at the shared forward's values (a linear
    map of `g`; nothing of the forward is recomputed per unit). A conv's is its transpose, computed for many units at
    once by `layers.conv_transpose_units`.

    A ReLU's rule at its output equals its rule at its input (same sign). LCN's is `ops.lcn`'s custom VJP rule
    (`bwd`) at the saved residuals. Pool outputs outside the map (a window hanging over the edge) get no signal; the
    pool's VJP is `layers.max_pool`'s unpooling with the saved offsets, or with `leave_pooled` a `Pooled` signal
    that the conv stage below unpools and rectifies in its transpose (the deconvnet rule's ReLU needs no saved map).
    """
    st = cone.stage
    if not st.pool:
        w = params[st.name]["w"]
        if isinstance(g, Pooled):
            return layers.conv_transpose_units(g.g[None], w, st.stride, 0, cone.length,
                                               unpool=(g.offset[None], g.window, g.stride), rectify=True)[0]
        (g,) = jax.vjp(ops.relu, saved[0])[1](g)
        return layers.conv_transpose_units(g[None], w, st.stride, 0, cone.length)[0]
    offset, lcn_residuals = saved
    if st.lcn:  # LCN mixes maps, not positions: the margins' zero residuals only spoil positions the mask clears
        (g,) = ops.lcn.bwd(*arch.lcn_params, lcn_residuals, g)
    g = jnp.where(_inside(out_start, g.shape[:2], cone.out_hw), g, jnp.zeros((), g.dtype))
    if leave_pooled:
        return Pooled(g, offset, st.kernel, st.stride)
    return layers.unpool_offsets(g[None], offset[None], cone.length, st.kernel, st.stride)[0]


def _window_starts(cones: tuple[Cone, ...], row: Array, col: Array):
    """(stage index, where its output window starts, where its input window starts) from the top stage down, for
    the unit at (row, col)."""
    start = jnp.stack([row, col]).astype(jnp.int32)
    for i in reversed(range(len(cones))):
        below = start * cones[i].stage.stride - cones[i].stage.pad
        yield i, start, below
        start = below


def _window(cones: tuple[Cone, ...], saved: tuple, i: int, start: Array):
    """Stage `i`'s window of one image's `saved_forward` for an output window at `start` (`dynamic_slice`, so it may
    be traced and vmapped): the stage's output window, moved by its margins."""
    before = _out_margins(cones, i)[0]
    length = cones[i + 1].length if i + 1 < len(cones) else (1, 1)
    corner = (start[0] + before[0], start[1] + before[1], 0)
    return jax.tree.map(lambda m: lax.dynamic_slice(m, corner, (*length, m.shape[2])), saved[i])


def _unit_windows(cones: tuple[Cone, ...], saved: tuple, row: Array, col: Array) -> tuple:
    """Every stage's `_window` for the unit at (row, col), bottom stage first."""
    return tuple(reversed([_window(cones, saved, i, start) for i, start, _ in _window_starts(cones, row, col)]))


def _pull_windows(arch, params, ops, cones, channels, window, channel, row, col, value) -> Array:
    """One image's unit pulled back through its cone only, stage by stage on `window(i, start)` (stage i's window of
    the shared forward), then placed in the image. `channels` is the number of maps of the unit's layer."""
    g = (jax.nn.one_hot(channel, channels, dtype=value.dtype) * value)[None, None]
    rectifies = ops.relu is rules.RELUS["deconvnet"]
    for i, start, below in _window_starts(cones, row, col):
        leave_pooled = rectifies and cones[i].stage.pool and i > 0 and not cones[i - 1].stage.pool  # a conv below
        g = stage_backward(arch, params, ops, cones[i], start, window(i, start), g, leave_pooled=leave_pooled)
        # the input stage's window is placed (and cut to the image) by `place`; an unpooled signal lies inside the
        # map already (switches point inside it), so a Pooled one goes to the conv below unmasked
        if i and not leave_pooled:
            g = jnp.where(_inside(below, cones[i].length, cones[i].source_hw), g, jnp.zeros((), g.dtype))
    return place(g, below, cones[0].source_hw)


def _crops(cones: tuple[Cone, ...], hw: tuple[int, int], crop: bool | str) -> bool:
    """Whether a projection runs through the cones: `crop` True, or "auto" when the cone is narrower than the image
    (one as wide as the image would only add window copies)."""
    return all(n < size for n, size in zip(cones[0].length, hw)) if crop == "auto" else bool(crop)


def _projector(arch, params, x, layer, rule, lcn_rule, crop):
    """`(acts[layer], pull)`: the forward pass once; `pull(channel, rows, cols, values)` projects one unit per image.

    `crop` True pulls each unit back through its receptive-field cone only (`_pull_windows`), False through the
    whole network's VJP (both give the same projection); "auto" crops when the cone is narrower than the image.
    """
    check_layer(arch, layer)
    ops = backward_ops(rule, lcn_rule)
    cones = cone_stages(arch, layer, x.shape[1:3])
    if not _crops(cones, x.shape[1:3], crop):
        acts, pullback = _forward(arch, params, x, layer, rule, lcn_rule)

        def pull(channel, rows, cols, value):
            return pullback(units.seed(acts, channel, rows, cols, value))[0]
        return acts, pull
    fwd = models.apply(arch, params, x, upto=layer)
    saved = saved_forward(arch, ops, cones, fwd)

    def one(saved, channel, row, col, value):  # each stage's window sliced where it is used (cache-friendly)
        return _pull_windows(arch, params, ops, cones, fwd.acts[layer].shape[3],
                             lambda i, start: _window(cones, saved, i, start), channel, row, col, value)

    def pull(channel, rows, cols, value):
        return jax.vmap(one, in_axes=(0, None, 0, 0, 0))(saved, channel, rows, cols, value)
    return fwd.acts[layer], pull


def _pull_unit(acts: Array, pull, channel, position) -> Projections:
    """Seed the chosen unit of each image with its value (all else zero) and pull it back to pixels."""
    rows, cols, value = units.select(acts, channel, position)
    return Projections(pull(channel, rows, cols, value), value, jnp.stack([rows, cols], axis=1).astype(jnp.int32))


def project(arch: models.Arch, params: models.Params, x: Array, layer: str, channel, *, position=None,
            rule: str = "deconvnet", lcn_rule: str = "identity", crop: bool | str = "auto") -> Array:
    """Project unit (`channel`, `position`) of `layer` of each image in `x` (N, H, W, C) back to pixels (same shape).

    `position` None takes each image's strongest activation in that channel; else an (h, w) pair or an (N, 2) array.
    `channel` and `position` may be traced (jit with `arch`, `layer`, `rule`, `lcn_rule` static; vmap over them with
    `x` unbatched shares the forward pass). A unit whose activation is zero projects to zeros. `crop` True runs the
    backward pass only through the unit's receptive-field cone, False through the whole network; "auto" (default)
    crops when that cone is narrower than the image (a conv5 unit of a 224 ZFNet image: 139 pixels, 2-3x faster).
    """
    check_layer(arch, layer)
    models.check_images(arch, x, upto=layer)
    models.check_params(arch, params)
    return _project_in_chunks(arch, params, x, layer, channel, position, rule, lcn_rule, crop)


CPU_CONE_CHUNK = 32
"""Images whose cones `project` pulls back at once on CPU (their forward passes go in `models.CPU_CHUNK`s): one unit
in each of 32 ZFNet images 463 -> 437 ms against forward and cones in the same chunks of 4."""


def _project_in_chunks(arch, params, x, layer, channel, position, rule, lcn_rule, crop) -> Array:
    """`project`'s work by `models.map_chunks` over the images (per-image positions chunked with them). Cropped, the
    forward and the windows the cones read go in small chunks, then a larger chunk's cones at once."""
    shape = dataclasses.replace(arch, input_shape=(*x.shape[1:3], arch.input_shape[2])).shapes()[layer]
    units.check(layer, (x.shape[0], *shape), channel, position)
    cones = cone_stages(arch, layer, x.shape[1:3])
    ops = backward_ops(rule, lcn_rule)
    per_image = position is not None and np.ndim(position) == 2

    def windows(images, pos):
        fwd = models.apply(arch, params, images, upto=layer)
        rows, cols, value = units.select(fwd.acts[layer], channel, pos)
        saved = saved_forward(arch, ops, cones, fwd)
        return jax.vmap(functools.partial(_unit_windows, cones))(saved, rows, cols), rows, cols, value

    def cropped(images, pos=position):
        w, rows, cols, value = (models.map_chunks(windows, images, pos) if per_image else
                                models.map_chunks(lambda part: windows(part, pos), images))
        def one(w, channel, row, col, value):
            return _pull_windows(arch, params, ops, cones, shape[-1], lambda i, _: w[i], channel, row, col, value)
        return jax.vmap(one, in_axes=(0, None, 0, 0, 0))(w, channel, rows, cols, value)

    def whole(images, pos=position):
        acts, pull = _projector(arch, params, images, layer, rule, lcn_rule, False)
        return _pull_unit(acts, pull, channel, pos).projections

    fn, chunk = ((cropped, CPU_CONE_CHUNK if jax.default_backend() == "cpu" else None)
                 if _crops(cones, x.shape[1:3], crop) else (whole, None))
    return models.map_chunks(fn, x, *([jnp.asarray(position)] if per_image else []), chunk=chunk)


@functools.partial(jax.jit, static_argnames=("arch", "layer", "chunk", "rule", "lcn_rule", "crop"))
def _project_channels(arch, params, image, layer, channels, chunk, rule, lcn_rule, crop) -> Projections:
    """One forward pass of `image`, then the channels' projections in vmapped chunks of `chunk` (bounds memory)."""
    acts, pull = _projector(arch, params, image[None], layer, rule, lcn_rule, crop)

    def one(channel):
        return Projections(*(leaf[0] for leaf in _pull_unit(acts, pull, channel, None)))

    return lax.map(one, channels, batch_size=chunk)


def project_many(arch: models.Arch, params: models.Params, image: Array, layer: str, channels=None, *,
                 chunk: int = 64, rule: str = "deconvnet", lcn_rule: str = "identity",
                 crop: bool | str = "auto") -> Projections:
    """Project the strongest unit of every channel of `layer` (or of `channels`) of ONE image (H, W, C_in).

    The forward pass is shared and compiled once; projections are computed `chunk` channels at a time (all 256
    conv5 channels of a 224 ZFNet image: 907 ms in chunks of 16, 881 of 32, 820 of 64, 839 of 128 on 2 CPU cores,
    with no higher peak memory; a smaller chunk bounds memory for large images).
    """
    check_layer(arch, layer)
    backward_ops(rule, lcn_rule)
    if np.ndim(image) != 3:
        raise ValueError(f"project_many takes one image (H, W, C), got shape {np.shape(image)}; "
                         "use project for batches")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    models.check_images(arch, image[None], upto=layer)
    models.check_params(arch, params)
    num = arch.shapes()[layer][-1]  # channels do not depend on the image size (no tracing per call)
    channels = np.arange(num) if channels is None else np.asarray(channels)
    if channels.ndim != 1 or channels.size == 0 or not np.issubdtype(channels.dtype, np.integer):
        raise ValueError(f"channels must be a non-empty 1-D list of ints, got {channels!r}")
    if channels.min() < 0 or channels.max() >= num:
        raise ValueError(f"channels {channels.tolist()} out of range: {layer} has {num} channels (0..{num - 1})")
    return _project_channels(arch, params, image, layer, jnp.asarray(channels, jnp.int32), min(chunk, channels.size),
                             rule, lcn_rule, crop)


__all__ = ["LCN_RULES", "backward_ops", "projectable_layers", "check_layer", "project", "project_many", "Cone", "cone_stages",
           "saved_forward", "stage_backward", "Pooled", "lcn_skipped_backward"]
