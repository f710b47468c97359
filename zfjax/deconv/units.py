"""Choosing a unit of a feature map: checking a (channel, position) against the map, and reading it per image.

A unit is one activation of an (N, H, W, C) map: a channel and a position (h, w). ``position=None`` means each
image's strongest unit of that channel (the first one in row-major order on ties). Channel and position may be
traced (jit, vmap over them); they are checked only when concrete.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Projections(NamedTuple):
    """Projected units (leading axis: one per unit; in `project_many`, per chosen channel of the image)."""
    projections: Array  # (U, H, W, C_in): each unit projected to pixels
    values: Array  # (U,): its activation (0 means the projection is all zeros)
    positions: Array  # (U, 2) int32: its (h, w) in the layer's map


def concrete(v) -> np.ndarray | None:
    """`v` as a numpy array, or None when it is a traced value (validation then happens only on concrete input)."""
    try:
        return np.asarray(v)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check(layer: str, shape: tuple[int, ...], channel, position) -> None:
    """ValueError for a concrete channel or position outside the (N, H, W, C) map called `layer`."""
    n, h, w, c = shape
    ch = concrete(channel)
    if ch is not None and (ch.ndim != 0 or not 0 <= int(ch) < c):
        raise ValueError(f"channel {channel!r} is out of range: {layer} has {c} channels (0..{c - 1})")
    if position is None:
        return
    pos = concrete(position)
    if pos is not None:
        if pos.shape not in ((2,), (n, 2)):
            raise ValueError(f"position must be (h, w) or an (N, 2) = ({n}, 2) array, got shape {pos.shape}")
        rows, cols = pos.reshape(-1, 2).T
        if rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w:
            raise ValueError(f"position {pos.tolist()} is outside the {h}x{w} map of {layer}")


def select(acts: Array, channel, position) -> tuple[Array, Array, Array]:
    """Per image, the chosen unit's (rows, cols, value): `position`, or the channel's strongest unit when None."""
    n, _, w, _ = acts.shape
    fmap = jnp.take(acts, channel, axis=3)  # (N, H, W); works for a traced channel
    if position is None:
        flat = jnp.argmax(fmap.reshape(n, -1), axis=1)
        rows, cols = flat // w, flat % w
    else:
        rows, cols = jnp.broadcast_to(jnp.asarray(position, jnp.int32), (n, 2)).T
    return rows, cols, fmap[jnp.arange(n), rows, cols]


def seed(acts: Array, channel, rows: Array, cols: Array, value: Array) -> Array:
    """The cotangent of a projection: zero except each image's chosen unit, which keeps its value."""
    return jnp.zeros_like(acts).at[jnp.arange(acts.shape[0]), rows, cols, channel].set(value)


__all__ = ["Projections", "concrete", "check", "select", "seed"]
