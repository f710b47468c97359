"""The backward rules of the deconvnet and its two relatives, in one table: how a ReLU passes a signal back.

The three rules differ only here; everything else on the way back (unpooling with the switches, the transposed
filters) is each layer's own VJP:

- ``"deconvnet"`` (the paper): ``max(g, 0)`` -- the reconstruction is rectified, whatever the sign of the forward
  input (Captum's ``Deconvolution``);
- ``"guided"`` (guided backpropagation, Springenberg et al. 2014): ``max(g, 0) * (x > 0)``;
- ``"saliency"`` (the plain gradient, Simonyan et al. 2013): ``g * (x > 0)``.

`RELUS` holds a ReLU per rule (forward ``jax.nn.relu``) for the built-in networks; `zfjax.deconv.transform` uses
`backward` to give the same rule to the ReLUs it finds in any function.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
RULES = ("deconvnet", "guided", "saliency")


def check(rule: str) -> None:
    """ValueError for a rule name not in `RULES`."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")


def needs_sign(rule: str) -> bool:
    """Whether the rule's backward reads the sign of the ReLU's forward input (all but the deconvnet's)."""
    return rule != "deconvnet"


def backward(rule: str, positive: Array | None, g: Array) -> Array:
    """The signal a ReLU passes back under `rule`: `g` the incoming signal, `positive` = (forward input > 0)."""
    zero = jnp.zeros((), g.dtype)
    if rule == "deconvnet":
        return jnp.maximum(g, zero)
    if rule == "guided":
        return jnp.where(positive, jnp.maximum(g, zero), zero)
    return jnp.where(positive, g, zero)


def _relu(rule: str):
    """``jax.nn.relu`` whose VJP is `rule`'s backward."""
    @jax.custom_vjp
    def relu(x: Array) -> Array:
        return jax.nn.relu(x)

    relu.defvjp(lambda x: (jax.nn.relu(x), x > 0 if needs_sign(rule) else None),
                lambda positive, g: (backward(rule, positive, g),))
    return relu


RELUS = {rule: _relu(rule) for rule in RULES}
"""rule -> a ReLU with that rule's backward (the saliency one is the true gradient of ``jax.nn.relu``)."""

__all__ = ["RULES", "RELUS", "check", "needs_sign", "backward"]
