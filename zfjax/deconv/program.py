"""A traced function as a flat list of operations, with its ReLUs, max pools and other activations found.

`trace(fn, *args)` turns a JAX function into a `Program`: the equations of its jaxpr with every `jit`/`pjit`/
`closed_call` body inlined (so a ReLU written as ``jnp.where(x > 0, x, 0)`` is seen whatever function boundary
the ``x > 0`` crossed), and every operation the output does not depend on dropped. Each remaining `Op` carries a
`Site` when it is one of:

- a **ReLU** (kind ``"relu"``) in any of the forms people write: ``jax.nn.relu`` / ``flax.linen.relu`` /
  ``nnx.relu`` (a ``custom_jvp_call``), ``jnp.maximum(x, 0.)`` or ``jnp.maximum(0., x)`` with a literal zero or a
  zero array (``jnp.zeros_like(x)``, a broadcast zero), ``jnp.where(x > 0, x, 0)`` (also ``>=``, ``0 < x``, and
  ``jnp.where(x <= 0, 0, x)``);
- a **max pool** (kind ``"pool"``): ``reduce_window_max`` (``flax.linen.max_pool``, ``nnx.max_pool``,
  ``lax.reduce_window(x, -jnp.inf, lax.max, ...)``) or a ``reduce_window`` whose reducer is ``max`` (another init
  value, e.g. ``lax.reduce_window(x, 0., lax.max, ...)``);
- an **other activation** (kind ``"other"``), for which the deconvnet's rules are undefined: GELU, SiLU/swish, leaky
  ReLU, ELU, CELU, SELU, softplus, mish, ReLU6, hard tanh/sigmoid/swish (``jax.nn``'s functions, found by name),
  the ``tanh``, ``logistic`` (sigmoid) and ``erf`` primitives, and the inline shapes of a leaky ReLU
  (``jnp.where(x > 0, x, a * x)``, ``jnp.maximum(x, a * x)``).

Sub-jaxprs that are not inlined (``cond``, ``scan``, ``while``, ``remat``, ``custom_jvp_call``,
``custom_vjp_call``) stay one `Op`; `sub_programs` traces their bodies, so sites inside them are found too.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import numpy as np
from jax.extend import core as jcore

INLINED = ("jit", "pjit", "closed_call", "core_call")
"""Call primitives whose body `trace` evaluates in place."""

ACTIVATIONS = ("gelu", "silu", "swish", "leaky_relu", "elu", "celu", "selu", "softplus", "mish", "relu6",
               "hard_tanh", "hard_sigmoid", "hard_silu", "hard_swish", "log_sigmoid", "sigmoid", "soft_sign",
               "sparse_plus", "squareplus", "glu", "tanh")
"""Names of ``jax.nn`` activations (their ``jit`` names) the rules are undefined for."""

ACTIVATION_PRIMITIVES = ("tanh", "logistic", "erf")
"""Primitives that are activations the rules are undefined for (GELU is written with ``tanh`` or ``erf``)."""

_SUB_PARAMS = ("jaxpr", "call_jaxpr", "branches", "cond_jaxpr", "body_jaxpr")


@dataclasses.dataclass(eq=False)
class Var:
    """One value of a `Program` (compared by identity)."""
    aval: Any


@dataclasses.dataclass(frozen=True)
class Site:
    """An operation the rules act on: what it is, where (the name stack, e.g. a Flax module path), its shape."""
    kind: str  # "relu", "pool" or "other"
    name: str  # the form found: "jax.nn.relu", "max(x, 0)", "where(x > 0, x, 0)", "reduce_window_max", "gelu", ...
    where: str
    shape: tuple[int, ...]
    x: int = 0  # index of the operation's input the site acts on (its other inputs are zeros or the sign of x)


@dataclasses.dataclass(eq=False)
class Op:
    """One equation of the flattened jaxpr; `ins` are `Var`s or `jcore.Literal`s."""
    primitive: Any
    params: dict
    ins: list
    outs: list
    where: str
    effects: Any = frozenset()
    site: Site | None = None


class Program(NamedTuple):
    """A flattened jaxpr: `consts` are the values of `constvars` (closed-over arrays, maybe tracers)."""
    constvars: list
    consts: list
    invars: list
    outvars: list
    ops: list


def trace(fn: Callable, *args) -> tuple[Program, Any]:
    """The `Program` of ``fn(*args)`` (every array leaf of `args` an input) and the output's pytree structure."""
    closed, out_tree = trace_jaxpr(fn, *args)
    return from_jaxpr(closed), out_tree


def trace_jaxpr(fn: Callable, *args) -> tuple[jcore.ClosedJaxpr, Any]:
    """The closed jaxpr of ``fn(*args)`` over the flat leaves of `args`, and the output's pytree structure."""
    flat, in_tree = jax.tree.flatten(args)
    closed, shapes = jax.make_jaxpr(lambda *a: fn(*jax.tree.unflatten(in_tree, a)), return_shape=True)(*flat)
    return closed, jax.tree.structure(shapes)


def from_jaxpr(closed: jcore.ClosedJaxpr, *, deep: bool = False) -> Program:
    """Flatten `closed` (inline `INLINED` calls), drop dead operations and mark the sites.

    `deep` also inlines the primal of every ``custom_jvp``/``custom_vjp`` function that is not a ReLU, every
    ``remat`` body and every named activation (their own derivative rules are dropped): only primitives remain,
    as `zfjax.deconv.cone`'s windowed backward needs.
    """
    program = Program([], [], [Var(v.aval) for v in closed.jaxpr.invars], [], [])
    constvars = _new_consts(program, closed.consts)
    program.outvars.extend(_inline(closed.jaxpr, constvars + program.invars, program, "", deep))
    program = _dead_code_removed(program)
    _mark_sites(program)
    return program


def _new_consts(program: Program, values: Sequence) -> list[Var]:
    """Vars of `program` holding the constants `values` (closed-over arrays of the jaxpr or of an inlined body)."""
    out = [Var(jax.typeof(v) if hasattr(jax, "typeof") else jcore.get_aval(v)) for v in values]
    program.constvars.extend(out)
    program.consts.extend(values)
    return out


def _inline(jaxpr: jcore.Jaxpr, args: list, program: Program, prefix: str, deep: bool) -> list:
    """Append `jaxpr`'s equations to `program` with its inputs bound to `args`; its outputs as atoms there."""
    ops = program.ops
    env: dict = dict(zip(list(jaxpr.constvars) + list(jaxpr.invars), args))

    def read(a):
        return a if isinstance(a, jcore.Literal) else env[a]

    for eqn in jaxpr.eqns:
        where = "/".join(p for p in (prefix, str(eqn.source_info.name_stack)) if p)
        ins = [read(a) for a in eqn.invars]
        if eqn.primitive.name in INLINED or (deep and _inlined_deep(eqn)):
            sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            sub_jaxpr, consts = (sub.jaxpr, list(sub.consts)) if hasattr(sub, "jaxpr") else (sub, [])
            name = eqn.params.get("name", "")
            if name in ACTIVATIONS and not deep:  # a jax.nn activation the rules do not cover: one site
                outs = [Var(v.aval) for v in eqn.outvars]
                ops.append(Op(eqn.primitive, eqn.params, ins, outs, where, eqn.effects,
                              Site("other", name, where, tuple(outs[0].aval.shape))))
            else:
                outs = _inline(sub_jaxpr, _new_consts(program, consts) + ins, program, where, deep)
        else:
            outs = [Var(v.aval) for v in eqn.outvars]
            ops.append(Op(eqn.primitive, eqn.params, ins, outs, where, eqn.effects))
        for v, o in zip(eqn.outvars, outs):
            if not isinstance(v, jcore.DropVar):
                env[v] = o
    return [read(a) for a in jaxpr.outvars]


def _inlined_deep(eqn) -> bool:
    """Whether `from_jaxpr(deep=True)` inlines this equation's body (everything with one but a ReLU)."""
    name = eqn.primitive.name
    if name == "custom_jvp_call":
        return not _is_relu(from_jaxpr(eqn.params["call_jaxpr"]))
    return name in ("custom_vjp_call", "checkpoint", "remat", "remat2")


def _dead_code_removed(p: Program) -> Program:
    """`p` without the operations its outputs do not depend on (jaxprs of pure functions have no side effects)."""
    live = {id(v) for v in p.outvars if isinstance(v, Var)}
    kept = []
    for op in reversed(p.ops):
        if op.effects or any(id(v) in live for v in op.outs):
            kept.append(op)
            live.update(id(a) for a in op.ins if isinstance(a, Var))
    return p._replace(ops=kept[::-1])


# ---------------------------------------------------------------------------------------------------------------
# Finding the sites: facts about values (a known zero; the sign of another value), propagated op by op.


class _Sign(NamedTuple):
    """The value is ``x > 0`` (or ``x >= 0``) when `positive`, else ``x <= 0`` (or ``x < 0``)."""
    x: Var
    positive: bool


_ZERO = "zero"
_PASS_ZERO = ("broadcast_in_dim", "convert_element_type", "reshape", "squeeze", "expand_dims", "copy", "copy_p")
_COMPARE = {"gt": (True, False), "ge": (True, False), "lt": (False, True), "le": (False, True)}
"""compare(a, b): with b zero the result is the sign of a with positive = [0]; with a zero, of b with [1]."""


def _is_zero(a, facts: dict) -> bool:
    if isinstance(a, jcore.Literal):
        return np.ndim(a.val) == 0 and a.val == 0
    return facts.get(id(a)) == _ZERO


def _is_float(a) -> bool:
    return isinstance(a, Var) and np.issubdtype(a.aval.dtype, np.floating)


def _mark_sites(p: Program) -> None:
    """Set `Op.site` on every ReLU, max pool and other activation of `p` (see the module docstring)."""
    facts: dict = {}
    scaled: dict = {}  # id(v) -> the Var that v is a constant multiple of
    for op in p.ops:
        name, ins = op.primitive.name, op.ins
        if name in _PASS_ZERO and _is_zero(ins[0], facts):
            facts[id(op.outs[0])] = _ZERO
        elif name in _COMPARE:
            a, b = ins
            if _is_zero(b, facts) and _is_float(a):
                facts[id(op.outs[0])] = _Sign(a, _COMPARE[name][0])
            elif _is_zero(a, facts) and _is_float(b):
                facts[id(op.outs[0])] = _Sign(b, _COMPARE[name][1])
        elif name == "mul" and any(isinstance(a, jcore.Literal) for a in ins):
            other = next((a for a in ins if isinstance(a, Var)), None)
            if other is not None:
                scaled[id(op.outs[0])] = other
        op.site = op.site or _site(op, facts, scaled)


def _site(op: Op, facts: dict, scaled: dict) -> Site | None:
    """The site `op` is (given the facts about its inputs), or None."""
    name, ins, shape = op.primitive.name, op.ins, tuple(op.outs[0].aval.shape) if op.outs else ()
    if name == "max" and len(ins) == 2:
        for i in (0, 1):
            x, other = ins[i], ins[1 - i]
            if _is_float(x) and _is_zero(other, facts) and tuple(x.aval.shape) == shape:
                return Site("relu", "max(x, 0)" if i == 0 else "max(0, x)", op.where, shape, i)
        if any(scaled.get(id(ins[i])) is ins[1 - i] for i in (0, 1)):
            return Site("other", "max(x, a * x) (leaky ReLU)", op.where, shape)
    if name == "select_n" and len(ins) == 3:
        sign = facts.get(id(ins[0]))
        if isinstance(sign, _Sign):
            keep, drop = (2, 1) if sign.positive else (1, 2)
            if ins[keep] is sign.x and _is_zero(ins[drop], facts):
                return Site("relu", "where(x > 0, x, 0)", op.where, shape, keep)
            if ins[keep] is sign.x or ins[drop] is sign.x:
                return Site("other", "where(x > 0, x, f(x)) (leaky ReLU, ELU)", op.where, shape)
    if name == "custom_jvp_call":
        inner = from_jaxpr(op.params["call_jaxpr"])
        if _is_relu(inner):
            return Site("relu", "jax.nn.relu", op.where, shape, op.params.get("num_consts", 0))
        others = [s for s in all_sites(inner) if s.kind == "other"]
        if others:
            return Site("other", others[0].name, op.where, shape)
    if name == "reduce_window_max" or (name == "reduce_window" and _reducer_is_max(op.params)):
        return Site("pool", name, op.where, shape)
    if name in ACTIVATION_PRIMITIVES:
        return Site("other", name, op.where, shape)
    return None


def _is_relu(p: Program) -> bool:
    """Whether `p` computes exactly a ReLU of its one input."""
    if len(p.invars) != 1 or len(p.outvars) != 1:
        return False
    last = next((op for op in p.ops if p.outvars[0] in op.outs), None)
    return last is not None and last.site is not None and last.site.kind == "relu" and \
        last.ins[last.site.x] is p.invars[0]


def _reducer_is_max(params: dict) -> bool:
    """Whether a generic ``reduce_window``'s reducer jaxpr is a single ``max`` of its two arguments."""
    jaxpr = params["jaxpr"]
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    return len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name == "max" and len(jaxpr.invars) == 2


def sub_programs(op: Op) -> list[tuple[str, Program]]:
    """(label, program) of each body of a ``cond``/``scan``/``while``/``remat``/``custom_*`` operation."""
    out = []
    for key in _SUB_PARAMS:
        value = op.params.get(key)
        for i, sub in enumerate(value if isinstance(value, (tuple, list)) else [value]):
            if isinstance(sub, jcore.ClosedJaxpr):
                out.append((f"{op.primitive.name}.{key}[{i}]", from_jaxpr(sub)))
            elif isinstance(sub, jcore.Jaxpr):
                out.append((f"{op.primitive.name}.{key}[{i}]", from_jaxpr(jcore.ClosedJaxpr(sub, ()))))
    return out


def all_sites(p: Program, prefix: str = "") -> Iterator[Site]:
    """Every site of `p`, in order, including those inside bodies of structured operations (once each)."""
    for op in p.ops:
        if op.site is not None:  # a site's body (a relu's custom_jvp, a gelu's jit) is the site itself
            yield dataclasses.replace(op.site, where="/".join(s for s in (prefix, op.site.where) if s))
            continue
        for label, sub in sub_programs(op):
            yield from all_sites(sub, "/".join(s for s in (prefix, op.where, label) if s))


def evaluate(p: Program, args: Sequence, rewrite: Callable[[Op, list], list | None] | None = None, *,
             keep: dict | None = None) -> list:
    """Run `p` on `args` (flat), binding each operation; `rewrite(op, invals)` may return replacement outputs.
    `keep` (id(var) -> None) receives the values of those variables."""
    env: dict = {id(v): c for v, c in zip(p.constvars, p.consts)}
    env.update((id(v), a) for v, a in zip(p.invars, args))

    def read(a):
        return a.val if isinstance(a, jcore.Literal) else env[id(a)]

    for op in p.ops:
        invals = [read(a) for a in op.ins]
        outs = rewrite(op, invals) if rewrite is not None else None
        if outs is None:
            outs = bind(op, invals)
        env.update((id(v), o) for v, o in zip(op.outs, outs))
    if keep is not None:
        keep.update((k, env[k]) for k in keep if k in env)
    return [read(a) for a in p.outvars]


def bind(op: Op, invals: Sequence) -> list:
    """Apply `op`'s primitive to `invals`; always a list of outputs."""
    params = op.primitive.get_bind_params(op.params)
    if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
        out = op.primitive.bind(*subfuns, *invals, **params)
    else:
        out = op.primitive.bind(*invals, **params)
    return list(out) if op.primitive.multiple_results else [out]


__all__ = ["Program", "Op", "Var", "Site", "trace", "trace_jaxpr", "from_jaxpr", "evaluate", "bind", "all_sites", "sub_programs",
           "ACTIVATIONS", "ACTIVATION_PRIMITIVES", "INLINED"]
