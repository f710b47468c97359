"""Filter renormalization (the paper's section 3): after every update, each conv filter whose RMS exceeds a radius
(0.1 in the paper) is scaled back to it, which keeps the first layers' filters from dominating.
"""
from __future__ import annotations

import jax.numpy as jnp

from zfjax.network import layers, models


def renormalize(params: models.Params, radius: float = 0.1) -> models.Params:
    """The paper's filter renormalization: any conv filter whose RMS exceeds `radius` is scaled back to it.

    A conv filter is one output channel of an HWIO kernel; fc layers are left alone. Pure: returns new params.
    """
    out = dict(params)
    for name, p in params.items():
        if p["w"].ndim == 4:
            r = layers.rms(p["w"], axis=(0, 1, 2))
            scale = jnp.where(r > radius, radius / jnp.maximum(r, 1e-30), 1.0)
            out[name] = {**p, "w": p["w"] * scale}
    return out


__all__ = ["renormalize"]
