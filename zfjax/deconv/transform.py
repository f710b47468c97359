"""The deconvnet's rules as a transformation of any JAX function: `apply_rule` and `rule_sites`.

``apply_rule(fn, rule)(*args)`` traces ``fn(*args)`` to a jaxpr (`zfjax.deconv.program`) and evaluates it equation by
equation, so it works on a Flax (linen or NNX) model, a plain ``lax`` function or a built-in network alike, under
``jax.jit``, ``jax.vmap``, ``jax.grad`` and shardings, with every argument (the parameters too) a traced input:
compiled once, it runs with new weights. Each site `zfjax.deconv.program` finds is replaced by a ``jax.custom_vjp``
function whose forward *is* the original equation (so the forward values are `fn`'s, bit for bit):

- a ReLU's backward becomes `rule`'s (`zfjax.deconv.rules`);
- a max pool's backward unpools with the switches (`zfjax.network.switches`): the exact gradient, the first maximum of a
  tied window, as JAX's own and torch's; it also gives a generic ``reduce_window`` max (another init value) a
  backward, which JAX lacks: the signal goes to the first maximum when it is at least the init value;
- other activations (GELU, SiLU, leaky ReLU, tanh, ...) keep their own gradient and are named in one warning
  (``strict=True`` raises instead): the rules are not defined for them.

Bodies of ``cond``, ``scan``, ``while``, ``remat`` are transformed in place (``lax.switch``, ``lax.scan``,
``lax.while_loop``, ``jax.checkpoint`` around the transformed body); a ``custom_jvp``/``custom_vjp`` function with
ReLUs inside is replaced by its transformed primal (its own derivative rule would bypass the ReLUs' rule), one
without keeps its rule. A function with no ReLU is a ValueError: the rule would change nothing.
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from zfjax.deconv import rules
from zfjax.deconv import program as pg
from zfjax.network import switches
from zfjax.deconv.program import Op, Program, Site

Array = jax.Array
_REMAT = ("checkpoint", "remat", "remat2")


def rule_sites(fn: Callable, *args) -> list[Site]:
    """What `apply_rule` rewrites in ``fn(*args)``: every ReLU, max pool and other activation, in order, with its
    kind, the form found, where (the name stack: a Flax module path) and its output shape."""
    return list(pg.all_sites(pg.trace(fn, *args)[0]))


def apply_rule(fn: Callable, rule: str = "deconvnet", *, strict: bool = False) -> Callable:
    """`fn` with the same forward values, whose VJP follows `rule` (see the module docstring).

    Every array leaf of the arguments is traced, as under ``jax.jit``: close over what must stay static. Each call
    traces `fn` again; wrap the result in ``jax.jit`` (or call it inside a jitted function) to pay that once.
    """
    rules.check(rule)

    @functools.wraps(fn)
    def transformed(*args):
        prog, out_tree = pg.trace(fn, *args)
        sites = list(pg.all_sites(prog))
        check_sites(sites, strict)
        return jax.tree.unflatten(out_tree, run(prog, jax.tree.leaves(args), rule))

    return transformed


def check_sites(sites: Sequence[Site], strict: bool) -> None:
    """ValueError when no ReLU is among `sites`; one warning (`strict`: ValueError) naming the other activations."""
    others = [s for s in sites if s.kind == "other"]
    if others:
        names = "; ".join(f"{s.name} {s.shape}" + (f" at {s.where}" if s.where else "") for s in others)
        message = (f"the deconvnet rules are defined for ReLU and max pooling only: {len(others)} other "
                   f"activation(s) keep their own gradient: {names}")
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
    if not any(s.kind == "relu" for s in sites):
        raise ValueError("the function has no ReLU (jax.nn.relu, jnp.maximum(x, 0), jnp.where(x > 0, x, 0)) "
                         "on the way to its output: the rules would change nothing")


def run(prog: Program, args: Sequence, rule: str) -> list:
    """Evaluate `prog` on flat `args` with `rule`'s sites (the ReLUs' backward, the pools' unpooling)."""
    return pg.evaluate(prog, args, functools.partial(_rewrite, rule))


def _rewrite(rule: str, op: Op, invals: list) -> list | None:
    """Replacement outputs of one operation, or None to bind it as it is."""
    if op.site is not None and op.site.kind == "relu":
        return [relu_site(rule, op, invals)]
    if op.site is not None and op.site.kind == "pool":
        return [pool_site(op, invals)]
    if op.site is None and _has_sites(op):
        return _structured(rule, op, invals)
    return None


def _has_sites(op: Op) -> bool:
    return any(s.kind in ("relu", "pool") for _, sub in pg.sub_programs(op) for s in pg.all_sites(sub))


def _with_vjp(forward: Callable, residuals: Callable, backward: Callable, x: Array, aux: list) -> Array:
    """``forward(x, aux)`` whose VJP in `x` is ``backward(residuals(x, aux), g)`` (no signal to `aux`)."""
    @jax.custom_vjp
    def site(x, aux):
        return forward(x, aux)

    site.defvjp(lambda x, aux: (forward(x, aux), residuals(x, aux)), lambda res, g: (backward(res, g), None))
    return site(x, aux)


def _splice(invals: list, i: int, x) -> list:
    return invals[:i] + [x] + invals[i + 1:]


def relu_site(rule: str, op: Op, invals: list) -> Array:
    """The ReLU `op` (input ``invals[op.site.x]``) evaluated as it is, its VJP `rule`'s."""
    i = op.site.x

    def forward(x, aux):
        return pg.bind(op, _splice(aux, i, x))[0]

    def sign(x, aux):
        return x > 0 if rules.needs_sign(rule) else None

    return _with_vjp(forward, sign, functools.partial(rules.backward, rule), invals[i], invals)


def pool_window(op: Op) -> switches.Window | None:
    """The pooling window of a max-pool site, or None when it is dilated (not a plain pool)."""
    p = op.params
    if any(d != 1 for d in tuple(p["base_dilation"]) + tuple(p["window_dilation"])):
        return None
    return switches.Window(tuple(p["window_dimensions"]), tuple(p["window_strides"]),
                           tuple(tuple(pad) for pad in p["padding"]))


def pool_site(op: Op, invals: list) -> Array:
    """The max pool `op` evaluated as it is; its VJP unpools with the switches (`zfjax.network.switches`)."""
    window = pool_window(op)
    if window is None:
        if op.primitive.name == "reduce_window_max":
            return pg.bind(op, invals)[0]  # JAX's own VJP (select_and_scatter): the first maximum too
        raise ValueError(f"a dilated reduce_window max at {op.where or 'the top level'} has no backward rule")
    x = invals[0]
    init = invals[1] if op.primitive.name == "reduce_window" else None

    def forward(x, aux):
        return pg.bind(op, _splice(aux, 0, x))[0]

    def residuals(x, aux):
        best, offset = switches.offsets(x, window)
        return offset if init is None else (offset, best >= aux[1])

    def backward(res, g):
        offset, reaches = (res, None) if init is None else res
        if reaches is not None:
            g = jnp.where(reaches, g, jnp.zeros((), g.dtype))
        return switches.unpool(g, offset, window, x.shape)

    return _with_vjp(forward, residuals, backward, x, invals)


def _structured(rule: str, op: Op, invals: list) -> list:
    """A ``cond``/``scan``/``while``/``remat``/``custom_*`` operation with sites inside, rebuilt around its
    transformed bodies."""
    name, p = op.primitive.name, op.params
    body = functools.partial(_run_closed, rule)
    if name == "cond":
        index, *operands = invals
        return list(lax.switch(index, [functools.partial(body, b) for b in p["branches"]], *operands))
    if name == "scan":
        consts, carry, xs = _split(invals, p["num_consts"], p["num_carry"])

        def step(c, x):
            out = body(p["jaxpr"], *consts, *c, *x)
            return out[:p["num_carry"]], out[p["num_carry"]:]

        carry, ys = lax.scan(step, carry, xs, length=p["length"], reverse=p["reverse"], unroll=p["unroll"])
        return list(carry) + list(ys)
    if name == "while":
        cond_consts, body_consts, init = _split(invals, p["cond_nconsts"], p["body_nconsts"])
        return list(lax.while_loop(lambda c: body(p["cond_jaxpr"], *cond_consts, *c)[0],
                                   lambda c: body(p["body_jaxpr"], *body_consts, *c), init))
    if name in _REMAT:
        jaxpr = jax.extend.core.ClosedJaxpr(p["jaxpr"], ())
        return list(jax.checkpoint(functools.partial(body, jaxpr), prevent_cse=p.get("prevent_cse", True),
                                   policy=p.get("policy"))(*invals))
    if name in ("custom_jvp_call", "custom_vjp_call"):
        return body(p["call_jaxpr"], *invals)
    raise NotImplementedError(f"cannot apply the rules inside a {name!r} operation at {op.where or 'top level'}")


def _run_closed(rule: str, closed, *args) -> list:
    return run(pg.from_jaxpr(closed), args, rule)


def _split(values: list, *sizes: int) -> list[list]:
    out, start = [], 0
    for n in sizes:
        out.append(list(values[start:start + n]))
        start += n
    return out + [list(values[start:])]


__all__ = ["apply_rule", "rule_sites", "check_sites", "run", "relu_site", "pool_site", "pool_window"]
