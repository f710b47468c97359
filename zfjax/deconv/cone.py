"""A unit's cone: the part of every value of ``fn(x)`` that one output unit depends on, as fixed-size windows that
move with the unit, and the projection's backward pass computed on those windows only.

A unit of a conv net's feature map sees a small part of the image: a conv5 unit of a 224x224 VGG-11 sees 134x134
pixels, and far less of each deeper map. `Cone` walks `fn`'s jaxpr backwards from one output unit and gives every
value on the way a *frame* per axis: ``[scale * u + start, scale * u + start + length)`` where ``u`` is the unit's
coordinate along one output axis (its image, row or column), or a fixed range (channels). This is exact interval
arithmetic over the same per-operation maps as the receptive field (`zfjax.deconv.intervals`), without clipping: a window
hanging over a map's edge keeps its margin, and the margin is masked (a conv's zero padding, a pool's -inf).

`project` then runs the forward pass once on the whole batch (shared by all units), and per unit only the backward
pass of each operation on its windows: a convolution's transpose on the window of its output signal, a ReLU's
rule on the window of its sign, a max pool's unpooling with the window of its switches (computed once). What a
unit needs of the forward pass is sliced from it; linear operations need nothing of it at all.

The proof can fail: an operation the window arithmetic does not cover (a gather, a loop, a transposed conv), or
two paths that need windows of different strides or one path that needs a whole map (a squeeze-and-excite
branch). `Cone` then raises `NotCroppable` and callers use the whole network's VJP (the same projection).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from zfjax.deconv import intervals, rules, transform
from zfjax.deconv import program as pg
from zfjax.network import switches
from zfjax.deconv.intervals import AxisMap
from zfjax.deconv.program import Op, Program

Array = jax.Array


class NotCroppable(ValueError):
    """The cone of `fn`'s units cannot be proved to be a moving window (the message says why)."""


class Frame(NamedTuple):
    """One axis of a value's window: ``[scale * u[which] + start, ... + length)``; `which` None: a fixed range."""
    which: int | None
    scale: int
    start: int
    length: int

    def begin(self, u: Sequence) -> Array | int:
        return self.start if self.which is None else self.scale * u[self.which] + self.start


_LINEAR = frozenset("""add sub neg conv_general_dilated dot_general pad slice broadcast_in_dim reshape squeeze
transpose reduce_sum reduce_window_sum convert_element_type select_n concatenate split copy copy_p
sharding_constraint""".split())
"""Operations linear in their inputs that depend on the image (when only one of mul/div/dot_general's does)."""
_CROPPABLE = (intervals.ELEMENTWISE | _LINEAR | {"reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin",
                                                "reduce_window_max", "reduce_window_min", "reduce_window",
                                                "custom_jvp_call", "rev"})


def _read(m: AxisMap, out: Sequence[Frame]) -> Frame:
    """The frame an input axis needs for the output frames `out` (see `intervals.AxisMap`)."""
    if m.out_axis is None:
        return Frame(None, 0, m.low, m.high - m.low + 1)
    if m.dilation != 1:
        raise NotCroppable("an input dilation (a transposed convolution or interior padding) on the way")
    f = out[m.out_axis]
    if f.which is None:
        lo, hi = sorted((f.start * m.stride + m.low, (f.start + f.length - 1) * m.stride + m.high))
        return Frame(None, 0, lo, hi - lo + 1)
    if m.stride <= 0:
        raise NotCroppable("a reversed axis moves with the unit")
    return Frame(f.which, f.scale * m.stride, f.start * m.stride + m.low,
                 (f.length - 1) * m.stride + m.high - m.low + 1)


def _union(a: Frame | None, b: Frame) -> Frame:
    if a is None:
        return b
    if (a.which, a.scale) != (b.which, b.scale):
        raise NotCroppable("two paths need windows of one value that do not move together "
                           f"({_describe(a)} and {_describe(b)})")
    lo, hi = min(a.start, b.start), max(a.start + a.length, b.start + b.length)
    return Frame(a.which, a.scale, lo, hi - lo)


def _describe(f: Frame) -> str:
    return f"fixed [{f.start}, {f.start + f.length})" if f.which is None else \
        f"{f.scale} * u{f.which} + [{f.start}, {f.start + f.length})"


def _shape(a) -> tuple[int, ...]:
    return tuple(a.aval.shape)


def _is_float(a) -> bool:
    return isinstance(a, pg.Var) and jnp.issubdtype(a.aval.dtype, jnp.floating)


class Cone:
    """The frames of every value one unit of `prog`'s (N, h, w, c) output depends on (module docstring).

    `prog` must come from ``from_jaxpr(deep=True)`` (primitives only) with the image as its input number `image`;
    `rule` says whether the ReLUs' backward reads their sign (all rules but the deconvnet's).
    """

    def __init__(self, prog: Program, rule: str, image: int = 0):
        self.prog, self.rule, self.image = prog, rule, prog.invars[image]
        out = prog.outvars[0]
        if len(prog.outvars) != 1 or not isinstance(out, pg.Var) or len(_shape(out)) != 4:
            raise NotCroppable("the function must return one (N, h, w, c) map")
        self.units = _shape(out)[:3]
        self.cone = self._depends_on_image()
        self.frames: dict[int, tuple[Frame, ...]] = {id(out): (Frame(0, 1, 0, 1), Frame(1, 1, 0, 1),
                                                               Frame(2, 1, 0, 1), Frame(None, 0, 0, _shape(out)[3]))}
        self.ops: list[Op] = []  # the operations of the cone, in forward order
        self.needs: dict[int, list[tuple[Frame, ...] | None]] = {}  # id(op) -> per input, the frame it reads
        for op in reversed(prog.ops):
            if any(id(v) in self.frames for v in op.outs) and any(id(v) in self.cone for v in op.outs):
                self._add(op)
        self.ops.reverse()
        if id(self.image) not in self.frames:
            raise NotCroppable("the map does not depend on the image")
        self.saved = self._saved_values()

    def _depends_on_image(self) -> set[int]:
        cone = {id(self.image)}
        for op in self.prog.ops:
            if any(isinstance(a, pg.Var) and id(a) in cone for a in op.ins):
                cone.update(id(v) for v in op.outs)
        return cone

    def _add(self, op: Op) -> None:
        name = op.primitive.name
        if name not in _CROPPABLE or (op.site is not None and op.site.kind == "pool" and
                                      transform.pool_window(op) is None):
            raise NotCroppable(f"{name} at {op.where or 'the top level'} is not covered by the window arithmetic")
        if name == "custom_jvp_call" and (op.site is None or op.site.kind != "relu"):
            raise NotCroppable(f"a custom_jvp function at {op.where or 'the top level'}")
        if name == "conv_general_dilated" and op.params.get("batch_group_count", 1) != 1:
            raise NotCroppable("a convolution with batch groups")
        maps = intervals.axis_maps(op) if name != "custom_jvp_call" else \
            [[[AxisMap(k, 1, 0, 0) for k in range(len(_shape(a)))] if isinstance(a, pg.Var) else None
              for a in op.ins]]
        needs: list[tuple[Frame, ...] | None] = [None] * len(op.ins)
        for v, per_in in zip(op.outs, maps):
            out = self.frames.get(id(v))
            if out is None:
                continue
            for i, (a, axes) in enumerate(zip(op.ins, per_in)):
                if axes is None or not isinstance(a, pg.Var):
                    continue
                need = tuple(_read(m, out) for m in axes)
                needs[i] = need if needs[i] is None else tuple(_union(x, y) for x, y in zip(needs[i], need))
        if name in ("concatenate", "split"):  # whole along the joined axis: the pieces then stay whole
            axis = op.params["dimension" if name == "concatenate" else "axis"]
            for v in op.outs:
                f = self.frames.get(id(v), Frame(None, 0, 0, _shape(v)[axis]))[axis]
                if f != Frame(None, 0, 0, _shape(v)[axis]):
                    raise NotCroppable(f"a {name} whose window along the joined axis is not all of it")
            needs = [None if n is None else n[:axis] + (Frame(None, 0, 0, _shape(a)[axis]),) + n[axis + 1:]
                     for a, n in zip(op.ins, needs)]
        needs = [self.full(a) if n is None and isinstance(a, pg.Var) and id(a) not in self.cone else n
                 for a, n in zip(op.ins, needs)]  # e.g. a pad value: read whole
        self.needs[id(op)] = needs
        for a, need in zip(op.ins, needs):
            if need is not None:
                old = self.frames.get(id(a))
                self.frames[id(a)] = need if old is None else tuple(_union(x, y) for x, y in zip(old, need))
        self.ops.append(op)

    def _saved_values(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """id(var) -> its margins: the values whose windows the backward reads from the forward pass."""
        out: dict[int, tuple[tuple[int, int], ...]] = {}
        for op in self.ops:
            for i, a in enumerate(op.ins):
                if isinstance(a, pg.Var) and self._reads_forward(op, i):
                    out[id(a)] = self.margins(a, self.frames[id(a)])
            if op.site is not None and op.site.kind == "pool":
                v = op.outs[0]
                out[id(v)] = self.margins(v, self.frames[id(v)])
                if isinstance(op.ins[-1], pg.Var) and op.primitive.name == "reduce_window":
                    out[id(op.ins[-1])] = ((0, 0),) * len(_shape(op.ins[-1]))  # the init value
        return out

    def _reads_forward(self, op: Op, i: int) -> bool:
        """Whether the backward of `op` reads input `i`'s forward value (not for linear uses of the image's)."""
        a = op.ins[i]
        if id(a) not in self.cone:
            return self.needs[id(op)][i] is not None
        if op.site is not None:
            return op.site.kind == "relu" and i == op.site.x and rules.needs_sign(self.rule)
        if not _is_float(a):
            return True
        return not self._linear(op)

    def _linear(self, op: Op) -> bool:
        name = op.primitive.name
        n_cone = sum(isinstance(a, pg.Var) and id(a) in self.cone and _is_float(a) for a in op.ins)
        if name in ("mul", "dot_general"):
            return n_cone == 1
        if name == "div":
            return n_cone == 1 and isinstance(op.ins[0], pg.Var) and id(op.ins[0]) in self.cone
        return name in _LINEAR

    @staticmethod
    def full(a) -> tuple[Frame, ...]:
        """The frames of all of `a`."""
        return tuple(Frame(None, 0, 0, n) for n in _shape(a))

    def margins(self, a, frames: Sequence[Frame]) -> tuple[tuple[int, int], ...]:
        """(before, after) per axis: how far `a`'s frames reach outside its shape over all units."""
        out = []
        for f, n in zip(frames, _shape(a)):
            if f.which is None:
                lo, hi = f.start, f.start + f.length - 1
            else:
                top = self.units[f.which] - 1
                lo, hi = sorted((f.start, f.scale * top + f.start))
                hi += f.length - 1
            out.append((max(0, -lo), max(0, hi - (n - 1))))
        return tuple(out)

    def input_window(self) -> tuple[int, int]:
        """(rows, cols) of the image window a unit's projection can touch."""
        f = self.frames[id(self.image)]
        return f[1].length, f[2].length


class Forward(NamedTuple):
    """The shared forward pass: the output map and the (margin-padded) values the cone's backward reads."""
    out: Array
    saved: dict


def forward(cone: Cone, args: Sequence) -> Forward:
    """Run the program once on the whole batch; keep (padded by their margins) what the backward reads, and each
    max pool's switches (`zfjax.network.switches.offsets` on the whole map, with its own padding)."""
    keep = {k: None for k in cone.saved}
    keep.update((id(op.ins[0]), None) for op in cone.ops if op.site is not None and op.site.kind == "pool")
    (out,) = pg.evaluate(cone.prog, args, keep=keep)
    saved = {}
    for op in cone.ops:
        if op.site is not None and op.site.kind == "pool":
            best, offset = switches.offsets(keep[id(op.ins[0])], transform.pool_window(op))
            pads = cone.saved[id(op.outs[0])]
            init = op.ins[-1]
            reaches = None if op.primitive.name != "reduce_window" else \
                best >= (init.val if isinstance(init, jax.extend.core.Literal) else keep[id(init)])
            saved[id(op)] = (jnp.pad(offset, pads), None if reaches is None else jnp.pad(reaches, pads))
    for k, pads in cone.saved.items():
        if keep.get(k) is not None:
            saved[k] = jnp.pad(keep[k], pads) if any(p != (0, 0) for p in pads) else keep[k]
    return Forward(out, saved)


def _window(cone: Cone, saved: dict, a, need: Sequence[Frame], u: Sequence, key=None) -> Array:
    """The window `need` of var `a`'s forward value (sliced from its padded copy)."""
    value = saved[id(a) if key is None else key]
    pads = cone.saved[id(a)]
    starts = [f.begin(u) + before for f, (before, _) in zip(need, pads)]
    return lax.dynamic_slice(value, [jnp.asarray(s, jnp.int32) for s in starts], [f.length for f in need])


def _inside(a, frames: Sequence[Frame], u: Sequence) -> Array:
    """Boolean mask of `frames`' positions that lie inside `a`'s shape (broadcastable to the window)."""
    mask = None
    for k, (f, n) in enumerate(zip(frames, _shape(a))):
        pos = f.begin(u) + jnp.arange(f.length)
        m = ((pos >= 0) & (pos < n)).reshape([f.length if j == k else 1 for j in range(len(frames))])
        mask = m if mask is None else mask & m
    return mask


def _windowed_params(op: Op, out_shapes: list[tuple[int, ...]]) -> dict:
    """`op`'s parameters for its window: no padding (the margins carry it), output shapes of the windows."""
    p, name = dict(op.params), op.primitive.name
    if name == "conv_general_dilated" or name.startswith("reduce_window"):
        p["padding"] = tuple((0, 0) for _ in p["padding"])
    elif name == "slice":
        strides = p["strides"] or (1,) * len(out_shapes[0])
        p["start_indices"] = (0,) * len(out_shapes[0])
        p["limit_indices"] = tuple((n - 1) * s + 1 for n, s in zip(out_shapes[0], strides))
    elif name == "broadcast_in_dim":
        p["shape"] = out_shapes[0]
    elif name == "reshape":
        p["new_sizes"], p["dimensions"] = out_shapes[0], None
    for key in ("sharding", "out_sharding"):
        if key in p:
            p[key] = None
    return p


def _op_backward(cone: Cone, fwd: Forward, rule: str, op: Op, cts: list, u: Sequence) -> list:
    """Cotangent windows (each in the frame `op` reads of that input; None for no signal) of `op`'s inputs."""
    needs = cone.needs[id(op)]
    g = cts[0]
    if op.site is not None and op.site.kind == "relu":
        i = op.site.x
        positive = _window(cone, fwd.saved, op.ins[i], needs[i], u) > 0 if rules.needs_sign(rule) else None
        return [rules.backward(rule, positive, g) if j == i else None for j in range(len(op.ins))]
    if op.site is not None and op.site.kind == "pool":
        offset, reaches = fwd.saved[id(op)]
        frames = cone.frames[id(op.outs[0])]
        offset = _slice_padded(offset, cone.saved[id(op.outs[0])], frames, u)
        if reaches is not None:
            g = jnp.where(_slice_padded(reaches, cone.saved[id(op.outs[0])], frames, u), g, jnp.zeros((), g.dtype))
        w = transform.pool_window(op)
        w = w._replace(padding=tuple((0, 0) for _ in w.padding))
        return [switches.unpool(g, offset, w, [f.length for f in needs[0]])] + [None] * (len(op.ins) - 1)
    diff = [i for i, a in enumerate(op.ins) if isinstance(a, pg.Var) and id(a) in cone.cone and _is_float(a)]
    out_shapes = [tuple(f.length for f in cone.frames[id(v)]) if id(v) in cone.frames else _shape(v)
                  for v in op.outs]
    params = _windowed_params(op, out_shapes)

    def value(i: int, a):
        if isinstance(a, jax.extend.core.Literal):
            return a.val
        if id(a) in cone.saved:
            whole = all(p == (0, 0) for p in cone.saved[id(a)]) and needs[i] == cone.full(a)
            return fwd.saved[id(a)] if whole else _window(cone, fwd.saved, a, needs[i], u)
        return jnp.zeros([f.length for f in needs[i]], a.aval.dtype)  # a linear use: any value does

    fixed = [value(i, a) for i, a in enumerate(op.ins)]

    def windowed(*xs):
        invals = list(fixed)
        for i, x in zip(diff, xs):
            invals[i] = x
        if op.primitive.name == "pad":
            return [invals[0]]  # the margins are the padding: the window passes through
        return pg.bind(pg.Op(op.primitive, params, op.ins, op.outs, op.where), invals)

    outs, pull = jax.vjp(windowed, *[fixed[i] for i in diff])
    grads = pull([c if c is not None else jnp.zeros_like(o) for c, o in zip(cts, outs)])
    result = [None] * len(op.ins)
    for i, gi in zip(diff, grads):
        result[i] = gi
    return result


def _slice_padded(value: Array, pads, frames: Sequence[Frame], u: Sequence) -> Array:
    starts = [f.begin(u) + before for f, (before, _) in zip(frames, pads)]
    return lax.dynamic_slice(value, [jnp.asarray(s, jnp.int32) for s in starts], [f.length for f in frames])


def in_range(rows: Array, cols: Array, hw: tuple[int, int]) -> Array:
    """(len(rows), len(cols), 1) mask: row index in [0, H) and column index in [0, W)."""
    return (((rows >= 0) & (rows < hw[0]))[:, None] & ((cols >= 0) & (cols < hw[1]))[None, :])[..., None]


def place(window: Array, start: Sequence, hw: tuple[int, int]) -> Array:
    """The (H, W, C) map that is `window` (h, w, C) with its top-left corner at `start` (maybe hanging over the
    edges) and zero elsewhere: one gather writes the result (no zero canvas to fill and crop)."""
    r, c = (jnp.arange(hw[i]) - start[i] for i in range(2))  # map position -> window position
    out = window[jnp.clip(r, 0, window.shape[0] - 1)[:, None], jnp.clip(c, 0, window.shape[1] - 1)[None, :]]
    return jnp.where(in_range(r, c, window.shape[:2]), out, jnp.zeros((), window.dtype))


def pull(cone: Cone, fwd: Forward, rule: str, image: Array, row: Array, col: Array, channel: Array,
         value: Array) -> Array:
    """The projection of one unit, (H, W, C) of its image: the rule's backward pass through the cone's windows."""
    u = (image, row, col)
    out = cone.prog.outvars[0]
    c = _shape(out)[3]
    cts = {id(out): (jax.nn.one_hot(channel, c, dtype=value.dtype) * value).reshape(1, 1, 1, c)}
    for op in reversed(cone.ops):
        gs = [cts.pop(id(v), None) for v in op.outs]
        if all(g is None for g in gs):
            continue
        gs = [None if g is None else jnp.where(_inside(v, cone.frames[id(v)], u), g, jnp.zeros((), g.dtype))
              for v, g in zip(op.outs, gs)]
        for a, need, gi in zip(op.ins, cone.needs[id(op)], _op_backward(cone, fwd, rule, op, gs, u)):
            if gi is None or id(a) not in cone.cone:
                continue
            frames = cone.frames[id(a)]
            pads = [(n.start - f.start, f.start + f.length - n.start - n.length) for n, f in zip(need, frames)]
            gi = jnp.pad(gi, pads) if any(p != (0, 0) for p in pads) else gi
            cts[id(a)] = gi if id(a) not in cts else cts[id(a)] + gi
    frames = cone.frames[id(cone.image)]
    g = cts[id(cone.image)]
    g = jnp.where(_inside(cone.image, frames, u), g, jnp.zeros((), g.dtype))
    return place(g[0], [frames[k].begin(u) for k in (1, 2)], _shape(cone.image)[1:3])


__all__ = ["Cone", "Frame", "NotCroppable", "Forward", "forward", "pull", "place", "in_range"]
