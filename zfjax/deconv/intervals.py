"""Which input positions a range of output positions reads, for every operation of a `zfjax.deconv.program.Program`.

Each operation maps intervals per axis: output positions ``[lo, hi]`` along output axis ``k`` read input positions
``[lo * stride + low, hi * stride + high]`` along an input axis (an `AxisMap`), with an input dilation for
transposed convolutions and interior padding. Convolutions (strides, padding, dilations, groups), every
``reduce_window`` (pools), ``pad``, ``slice``, ``rev``, ``concatenate``, ``split``, broadcasts, reshapes that
keep an axis, transposes, reductions, ``dot_general`` and elementwise operations are mapped exactly; bodies of
``custom_jvp``/``custom_vjp``/``remat``/``cond`` are walked through; anything else (a gather, a loop, a reshape
that merges axes, as a flatten before a dense layer does) reads its whole input.

`needs` walks a program backwards from the positions wanted of its output, clipping to each value's shape at
every step (padding never widens the result): the receptive field, `zfjax.network.receptive_field.Field`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence


from zfjax.deconv import program as pg
from zfjax.deconv.program import Op, Program

Interval = tuple[int, int]  # inclusive
Need = tuple[Interval, ...]  # one interval per axis of a value


class AxisMap(NamedTuple):
    """How one input axis follows output axis `out_axis` (None: a fixed range ``[low, high]``)."""
    out_axis: int | None
    stride: int
    low: int
    high: int
    dilation: int = 1  # input position t sits at t * dilation (a transposed conv's lhs dilation, interior padding)


def _same(k: int) -> AxisMap:
    return AxisMap(k, 1, 0, 0)


def _fixed(lo: int, hi: int) -> AxisMap:
    return AxisMap(None, 0, lo, hi)


def _whole(n: int) -> AxisMap:
    return _fixed(0, n - 1)


ELEMENTWISE = frozenset("""add sub mul div max min neg exp exp2 log log1p expm1 tanh logistic sqrt rsqrt cbrt pow
integer_pow abs sign select_n convert_element_type erf erfc erf_inv sin cos tan asin acos atan atan2 sinh cosh asinh
acosh atanh clamp gt lt ge le eq ne and or not xor square floor ceil round nextafter rem is_finite copy copy_p
reduce_precision sharding_constraint real imag conj optimization_barrier shift_left shift_right_logical
shift_right_arithmetic population_count""".split())
_REDUCE = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or", "argmax", "argmin")
_WINDOW = ("reduce_window_sum", "reduce_window_max", "reduce_window_min", "reduce_window")
_BODY = ("custom_jvp_call", "custom_vjp_call", "checkpoint", "remat", "remat2", "closed_call", "core_call")


def _shape(a) -> tuple[int, ...]:
    return tuple(a.aval.shape)


def _elementwise(op: Op) -> list[list[AxisMap] | None]:
    out = _shape(op.outs[0])
    maps = []
    for a in op.ins:
        s = _shape(a)
        if len(s) != len(out):
            maps.append([_whole(n) for n in s])
        else:
            maps.append([_same(k) if n == m else _fixed(0, 0) if n == 1 else _whole(n)
                         for k, (n, m) in enumerate(zip(s, out))])
    return maps


def _reshape(in_shape: Sequence[int], out_shape: Sequence[int]) -> list[AxisMap]:
    """Axes a reshape keeps (alone in a group of equal products, size-1 axes aside) follow; the rest are whole."""
    maps: list[AxisMap] = [_whole(n) for n in in_shape]
    i = j = 0
    while i < len(in_shape) or j < len(out_shape):
        gi, gj = [i], [j]
        pi = in_shape[i] if i < len(in_shape) else 1
        pj = out_shape[j] if j < len(out_shape) else 1
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(in_shape):
                pi, gi = pi * in_shape[i], gi + [i]
                i += 1
            elif j < len(out_shape):
                pj, gj = pj * out_shape[j], gj + [j]
                j += 1
            else:
                break
        big_in = [a for a in gi if a < len(in_shape) and in_shape[a] > 1]
        big_out = [b for b in gj if b < len(out_shape) and out_shape[b] > 1]
        for a in gi:
            if a < len(in_shape) and in_shape[a] == 1:
                maps[a] = _fixed(0, 0)
        if len(big_in) == 1 and len(big_out) == 1:
            maps[big_in[0]] = _same(big_out[0])
    return maps


def _conv(op: Op) -> list[list[AxisMap] | None]:
    p = op.params
    lhs, rhs = op.ins[:2]
    dn = p["dimension_numbers"]
    lhs_spec, out_spec = dn.lhs_spec, dn.out_spec
    k_shape = _shape(rhs)
    maps = [_whole(n) for n in _shape(lhs)]
    if p.get("batch_group_count", 1) == 1:
        maps[lhs_spec[0]] = _same(out_spec[0])
    for i, (a, b) in enumerate(zip(lhs_spec[2:], out_spec[2:])):
        lo = p["padding"][i][0]
        kernel = k_shape[dn.rhs_spec[2 + i]]
        dil = p["rhs_dilation"][i]
        maps[a] = AxisMap(b, p["window_strides"][i], -lo, -lo + (kernel - 1) * dil, p["lhs_dilation"][i])
    return [maps, [_whole(n) for n in k_shape]] + [None] * (len(op.ins) - 2)


def _window(op: Op) -> list[list[AxisMap] | None]:
    p = op.params
    n_operands = len(op.ins) if op.primitive.name != "reduce_window" else len(op.ins) // 2
    maps = []
    for a in op.ins[:n_operands]:
        maps.append([AxisMap(k, p["window_strides"][k], -p["padding"][k][0],
                             -p["padding"][k][0] + (p["window_dimensions"][k] - 1) * p["window_dilation"][k],
                             p["base_dilation"][k]) for k in range(len(_shape(a)))])
    return maps + [None] * (len(op.ins) - n_operands)


def _dot_general(op: Op) -> list[list[AxisMap] | None]:
    (lc, rc), (lb, rb) = op.params["dimension_numbers"]
    lhs, rhs = (_shape(a) for a in op.ins[:2])
    lhs_free = [k for k in range(len(lhs)) if k not in lc and k not in lb]
    rhs_free = [k for k in range(len(rhs)) if k not in rc and k not in rb]
    lmap, rmap = [_whole(n) for n in lhs], [_whole(n) for n in rhs]
    for j, (a, b) in enumerate(zip(lb, rb)):
        lmap[a], rmap[b] = _same(j), _same(j)
    for j, a in enumerate(lhs_free):
        lmap[a] = _same(len(lb) + j)
    for j, b in enumerate(rhs_free):
        rmap[b] = _same(len(lb) + len(lhs_free) + j)
    return [lmap, rmap]


def _pad(op: Op) -> list[list[AxisMap] | None]:
    return [[AxisMap(k, 1, -lo, -lo, interior + 1) for k, (lo, _, interior) in enumerate(op.params["padding_config"])],
            None]


def _slice(op: Op) -> list[list[AxisMap] | None]:
    p = op.params
    strides = p["strides"] or (1,) * len(p["start_indices"])
    return [[AxisMap(k, s, start, start) for k, (s, start) in enumerate(zip(strides, p["start_indices"]))]]


def axis_maps(op: Op) -> list[list[list[AxisMap] | None]] | None:
    """Per output of `op`, per input: one `AxisMap` per input axis (None: the input is not read); None for an
    operation with a body (walked through by `needs`)."""
    name, p = op.primitive.name, op.params
    shapes = [_shape(a) for a in op.ins]
    if name in _BODY or name == "cond":
        return None
    if name in ELEMENTWISE:
        per_out = _elementwise(op)
        return [per_out for _ in op.outs] if name != "optimization_barrier" else \
            [[[_same(k) for k in range(len(s))] if i == j else None for i, s in enumerate(shapes)]
             for j in range(len(op.outs))]
    if name == "broadcast_in_dim":
        out = _shape(op.outs[0])
        maps = [_fixed(0, 0) if n == 1 and out[d] != 1 else _same(d)
                for n, d in zip(shapes[0], p["broadcast_dimensions"])]
        return [[maps] + [None] * (len(op.ins) - 1)]
    if name == "reshape":
        return [[_reshape(shapes[0], _shape(op.outs[0]))] + [None] * (len(op.ins) - 1)]
    if name == "squeeze":
        kept = [k for k in range(len(shapes[0])) if k not in p["dimensions"]]
        maps = [_fixed(0, 0)] * len(shapes[0])
        for j, k in enumerate(kept):
            maps[k] = _same(j)
        return [[maps]]
    if name == "transpose":
        maps = [None] * len(shapes[0])
        for j, k in enumerate(p["permutation"]):
            maps[k] = _same(j)
        return [[maps]]
    if name in _REDUCE:
        kept = [k for k in range(len(shapes[0])) if k not in p["axes"]]
        maps = [_whole(n) for n in shapes[0]]
        for j, k in enumerate(kept):
            maps[k] = _same(j)
        return [[maps]]
    if name == "conv_general_dilated":
        return [_conv(op)]
    if name in _WINDOW:
        per_out = _window(op)
        return [per_out for _ in op.outs]
    if name == "pad":
        return [_pad(op)]
    if name == "slice":
        return [_slice(op)]
    if name == "rev":
        return [[[AxisMap(k, -1, n - 1, n - 1) if k in p["dimensions"] else _same(k)
                  for k, n in enumerate(shapes[0])]]]
    if name == "concatenate":
        dim, offset, maps = p["dimension"], 0, []
        for s in shapes:
            maps.append([AxisMap(k, 1, -offset, -offset) if k == dim else _same(k) for k in range(len(s))])
            offset += s[dim]
        return [maps]
    if name == "split":
        dim, offset, out = p["axis"], 0, []
        for v in op.outs:
            out.append([[AxisMap(k, 1, offset, offset) if k == dim else _same(k) for k in range(len(shapes[0]))]])
            offset += _shape(v)[dim]
        return out
    if name == "dot_general":
        return [_dot_general(op)]
    if name == "iota":
        return [[]]
    return [[[_whole(n) for n in s] if isinstance(a, pg.Var) else None for a, s in zip(op.ins, shapes)]
            for _ in op.outs]


def read(m: AxisMap, need: Need, size: int) -> Interval | None:
    """The input interval axis map `m` reads for the output need, clipped to [0, size); None when empty."""
    if m.out_axis is None:
        lo, hi = m.low, m.high
    else:
        lo, hi = need[m.out_axis]
        lo, hi = sorted((lo * m.stride + m.low, hi * m.stride + m.high))
    if m.dilation > 1:
        lo, hi = -(-lo // m.dilation), hi // m.dilation
    lo, hi = max(lo, 0), min(hi, size - 1)
    return (lo, hi) if lo <= hi else None


def union(a: Need | None, b: Need | None) -> Need | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b))


class Walker:
    """Backward interval walks over one program (bodies of structured operations traced once and kept)."""

    def __init__(self, prog: Program):
        self.prog = prog
        self._bodies: dict[int, list[tuple[Program, int]]] = {}

    def needs(self, out_needs: Sequence[Need | None]) -> dict[int, Need]:
        """id(value) -> the positions of it that the output positions `out_needs` (one per output) read."""
        return self._walk(self.prog, out_needs)

    def _walk(self, prog: Program, out_needs: Sequence[Need | None]) -> dict[int, Need]:
        found: dict[int, Need] = {}
        for v, need in zip(prog.outvars, out_needs):
            if isinstance(v, pg.Var) and need is not None:
                found[id(v)] = union(found.get(id(v)), need)
        for op in reversed(prog.ops):
            outs = [found.get(id(v)) for v in op.outs]
            if all(n is None for n in outs):
                continue
            for a, need in zip(op.ins, self._op_needs(op, outs)):
                if isinstance(a, pg.Var) and need is not None:
                    found[id(a)] = union(found.get(id(a)), need)
        return found

    def _op_needs(self, op: Op, outs: list[Need | None]) -> list[Need | None]:
        maps = axis_maps(op)
        if maps is None:
            return self._through_bodies(op, outs)
        result: list[Need | None] = [None] * len(op.ins)
        for need, per_in in zip(outs, maps):
            if need is None:
                continue
            for i, (a, axes) in enumerate(zip(op.ins, per_in)):
                if axes is None or not isinstance(a, pg.Var):
                    continue
                got = tuple(read(m, need, n) for m, n in zip(axes, _shape(a)))
                if all(g is not None for g in got):
                    result[i] = union(result[i], got)
        return result

    def _through_bodies(self, op: Op, outs: list[Need | None]) -> list[Need | None]:
        """Walk the bodies of `op` (each with the offset of its inputs among op's): the union of their needs."""
        if id(op) not in self._bodies:
            offset = 1 if op.primitive.name == "cond" else 0
            self._bodies[id(op)] = [(sub, offset) for _, sub in pg.sub_programs(op)
                                    if len(sub.invars) == len(op.ins) - offset]
        bodies = self._bodies[id(op)]
        if not bodies:
            return [tuple((0, n - 1) for n in _shape(a)) if isinstance(a, pg.Var) else None for a in op.ins]
        result: list[Need | None] = [None] * len(op.ins)
        if op.primitive.name == "cond" and isinstance(op.ins[0], pg.Var):
            result[0] = ()
        for sub, offset in bodies:
            found = self._walk(sub, outs)
            for i, v in enumerate(sub.invars):
                result[i + offset] = union(result[i + offset], found.get(id(v)))
        return result


def full(shape: Sequence[int]) -> Need:
    return tuple((0, n - 1) for n in shape)


def size(need: Need) -> int:
    return math.prod(hi - lo + 1 for lo, hi in need)


__all__ = ["AxisMap", "Interval", "Need", "ELEMENTWISE", "axis_maps", "read", "union", "Walker", "full", "size"]
