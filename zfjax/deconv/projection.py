"""Projections of any JAX function's units back to pixels: `project_fn` and `project_many_fn`.

`fn` maps images (N, H, W, C) to a feature map (N, h, w, c): a Flax model cut at a layer
(`zfjax.flax_points`), a plain ``lax`` function, a built-in network stopped at a layer. A projection is the VJP of
``apply_rule(fn, rule)`` (`zfjax.deconv.transform`) at the images, seeded with a cotangent that is zero except for the
chosen unit, which keeps its value: the same semantics as `zfjax.deconv.project` for the built-in networks.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from zfjax.deconv import cone, rules, transform, units
from zfjax.deconv import program as pg
from zfjax.deconv.units import Projections

Array = jax.Array


def check_images(x) -> None:
    """ValueError unless `x` is a float NHWC batch."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"images must be a float NHWC batch of rank 4, got shape {np.shape(x)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"image dtype {x.dtype} is not floating point: convert and scale images to float first")


def check_map(acts, what: str = "fn") -> None:
    """ValueError unless `acts` is an (N, h, w, c) feature map."""
    if getattr(acts, "ndim", None) != 4:
        raise ValueError(f"{what} must return an (N, h, w, c) feature map, got shape {np.shape(acts)}")


CROPS = ("auto", True, False)


def projector(fn: Callable, x: Array, *, rule: str = "deconvnet", strict: bool = False, crop: bool | str = "auto"):
    """`(acts, pull)`: ``fn(x)`` once, and ``pull(channel, rows, cols, value)`` projecting one unit per image.

    `crop` True pulls each unit back through its cone only (`zfjax.deconv.cone`; NotCroppable when that cannot be
    proved), False through the whole function's VJP; "auto" crops when the cone is proved, narrower than the
    image, and no ``custom_jvp``/``custom_vjp`` rule on the way would be replaced by its primal's derivative.
    """
    rules.check(rule)
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    check_images(x)
    closed, _ = pg.trace_jaxpr(fn, x)
    prog = pg.from_jaxpr(closed)
    if len(prog.outvars) != 1:
        raise ValueError(f"fn must return one (N, h, w, c) feature map, got {len(prog.outvars)} arrays")
    check_map(prog.outvars[0].aval)
    transform.check_sites(list(pg.all_sites(prog)), strict)
    if crop:
        try:
            return _cropped(prog, closed, x, rule, crop)
        except cone.NotCroppable:
            if crop is True:
                raise
    acts, pullback = jax.vjp(lambda x: transform.run(prog, [x], rule)[0], x)

    def pull(channel, rows, cols, value):
        return pullback(units.seed(acts, channel, rows, cols, value))[0]
    return acts, pull


def _cropped(prog: pg.Program, closed, x: Array, rule: str, crop: bool | str):
    """`projector`'s cropped form: the forward once, each unit pulled back through its cone's windows."""
    if crop == "auto" and any(op.primitive.name in ("custom_vjp_call", "custom_jvp_call") and op.site is None
                              for op in prog.ops):
        raise cone.NotCroppable("a custom derivative rule on the way")
    c = cone.Cone(pg.from_jaxpr(closed, deep=True), rule)
    if crop == "auto" and not all(n < size for n, size in zip(c.input_window(), x.shape[1:3])):
        raise cone.NotCroppable("the cone is as wide as the image")
    fwd = cone.forward(c, [x])

    def pull(channel, rows, cols, value):
        one = lambda n, r, col, v: cone.pull(c, fwd, rule, n, r, col, channel, v)  # noqa: E731
        return jax.vmap(one)(jnp.arange(x.shape[0]), rows, cols, value)
    return fwd.out, pull


def project_fn(fn: Callable, x: Array, channel, position=None, *, rule: str = "deconvnet",
               strict: bool = False, crop: bool | str = "auto") -> Array:
    """Project unit (`channel`, `position`) of ``fn(x)`` of each image of `x` back to pixels (the shape of `x`).

    `position` None takes each image's strongest unit of `channel`, else an (h, w) pair or an (N, 2) array;
    `channel` and `position` may be traced (``jax.jit(jax.vmap(lambda c: project_fn(fn, x, c)))`` shares the
    forward pass among the channels). `strict` raises on activations the rules do not cover (else one warning).
    `crop` (see `projector`): "auto" pulls each unit back through its receptive-field cone only where that is
    proved, else through the whole VJP; both give the same projection.
    """
    acts, pull = projector(fn, x, rule=rule, strict=strict, crop=crop)
    units.check("fn(x)", acts.shape, channel, position)
    rows, cols, value = units.select(acts, channel, position)
    return pull(channel, rows, cols, value)


@functools.partial(jax.jit, static_argnames=("fn", "chunk", "rule", "strict", "crop"))
def _project_channels(fn, image, channels, chunk, rule, strict, crop) -> Projections:
    acts, pull = projector(fn, image[None], rule=rule, strict=strict, crop=crop)

    def one(channel):
        rows, cols, value = units.select(acts, channel, None)
        return Projections(pull(channel, rows, cols, value)[0], value[0], jnp.stack([rows, cols], 1)[0])

    return lax.map(one, channels, batch_size=chunk)


def project_many_fn(fn: Callable, image: Array, channels=None, *, chunk: int = 16, rule: str = "deconvnet",
                    strict: bool = False, crop: bool | str = "auto") -> Projections:
    """The strongest unit of every channel of ``fn(image[None])`` (or of `channels`) of ONE image (H, W, C),
    projected: one forward pass, `chunk` projections at a time, compiled once per `fn` (keep the same object)."""
    if np.ndim(image) != 3:
        raise ValueError(f"project_many_fn takes one image (H, W, C), got shape {np.shape(image)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    check_images(image[None])
    shape = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, *np.shape(image)), image.dtype))
    check_map(shape)
    num = shape.shape[3]
    channels = np.arange(num) if channels is None else np.asarray(channels)
    if channels.ndim != 1 or channels.size == 0 or not np.issubdtype(channels.dtype, np.integer):
        raise ValueError(f"channels must be a non-empty 1-D list of ints, got {channels!r}")
    if channels.min() < 0 or channels.max() >= num:
        raise ValueError(f"channels {channels.tolist()} out of range: fn(x) has {num} channels (0..{num - 1})")
    return _project_channels(fn, jnp.asarray(image), jnp.asarray(channels, jnp.int32), min(chunk, channels.size),
                             rule, strict, crop)


__all__ = ["project_fn", "project_many_fn", "projector", "check_images", "check_map"]
