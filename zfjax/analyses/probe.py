"""The linear probe: a classifier on frozen features, and its scores (Tables 4-7, Fig. 9).

- `fit_linear`: a softmax (multi-class) or one-vs-all logistic (multi-label, Table 6) layer with L2, trained full
  batch with optax's L-BFGS on standardized features; the standardization is folded back into the weights, so the
  returned `Linear` applies to the raw features (and can become a network's new ``fc8``:
  `zfjax.analyses.transfer.with_head`).
- `accuracy`, `average_precision` / `mean_ap`: top-1 accuracy; per-class AP (scikit-learn) and their mean (Table 6).
"""
from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

LOSSES = ("softmax", "sigmoid")


class Linear(NamedTuple):
    """A linear classifier on raw features: ``logits = x @ w + b``; w (D, C), b (C,)."""
    w: np.ndarray
    b: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32) @ self.w + self.b


def _objective(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, loss: str, l2: float) -> jax.Array:
    """Mean softmax CE (integer labels) or summed-over-classes mean logistic loss (multi-hot), + l2/2 ||w||^2."""
    logits = x @ params["w"] + params["b"]
    if loss == "softmax":
        data = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    else:  # one independent logistic regression per class: the terms share no parameters
        data = optax.sigmoid_binary_cross_entropy(logits, y.astype(logits.dtype)).mean(0).sum()
    return data + 0.5 * l2 * jnp.sum(params["w"] ** 2)


@functools.partial(jax.jit, static_argnames=("num_outputs", "loss", "steps"))
def _lbfgs(x: jax.Array, y: jax.Array, l2: float, *, num_outputs: int, loss: str, steps: int):
    """`steps` L-BFGS iterations (zoom line search) from zero weights; returns the params and the final objective."""
    fn = functools.partial(_objective, x=x, y=y, loss=loss, l2=l2)
    params = {"w": jnp.zeros((x.shape[1], num_outputs), x.dtype), "b": jnp.zeros((num_outputs,), x.dtype)}
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fn)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fn)
        return (optax.apply_updates(params, updates), state), value

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, fn(params)


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of `x` (std 1 where a feature is constant, e.g. a dead ReLU)."""
    mean, std = x.mean(0), x.std(0)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def fit_linear(x: np.ndarray, y: np.ndarray, *, loss: str = "softmax", l2: float = 1e-3, steps: int = 200,
               num_classes: int | None = None) -> Linear:
    """A linear classifier minimizing ``mean loss + l2/2 ||w||^2`` on standardized features (fitted on `x`).

    ``loss="softmax"``: integer labels `y` (N,), `num_classes` outputs (default ``max(y) + 1``). ``"sigmoid"``:
    multi-hot `y` (N, C), one-vs-all logistic per class. The returned `Linear` takes raw (unstandardized) features.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need features (N, D) and N labels, N > 0; got {x.shape} and {y.shape}")
    if loss == "softmax" and y.ndim != 1:
        raise ValueError(f"softmax needs integer labels (N,), got shape {y.shape} (multi-hot? use loss='sigmoid')")
    if loss == "sigmoid" and y.ndim != 2:
        raise ValueError(f"sigmoid (one-vs-all) needs multi-hot labels (N, C), got shape {y.shape}")
    outputs = y.shape[1] if loss == "sigmoid" else (num_classes or int(y.max()) + 1)
    if loss == "softmax" and not 0 <= y.min() <= y.max() < outputs:
        raise ValueError(f"labels must be in 0..{outputs - 1}, got {y.min()}..{y.max()}")
    mean, std = standardization(x)
    params, value = _lbfgs(jnp.asarray((x - mean) / std), jnp.asarray(y), jnp.float32(l2), num_outputs=outputs,
                           loss=loss, steps=steps)
    if not np.isfinite(float(value)):
        raise FloatingPointError(f"linear classifier objective is {float(value)}; check the features for inf/NaN")
    w = np.asarray(params["w"]) / std[:, None]
    return Linear(w.astype(np.float32), (np.asarray(params["b"]) - mean @ w).astype(np.float32))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of `logits` (N, C) against integer `labels` (N,)."""
    return float(np.mean(np.argmax(logits, -1) == labels))


def average_precision(multi_hot: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class average precision (scikit-learn's `average_precision_score`); NaN for a class with no positives."""
    from sklearn.metrics import average_precision_score
    multi_hot, scores = np.asarray(multi_hot), np.asarray(scores)
    if multi_hot.shape != scores.shape or multi_hot.ndim != 2:
        raise ValueError(f"labels {multi_hot.shape} and scores {scores.shape} must both be (N, classes)")
    out = np.full(multi_hot.shape[1], np.nan)
    for c in range(multi_hot.shape[1]):
        if multi_hot[:, c].any():
            out[c] = average_precision_score(multi_hot[:, c], scores[:, c])
        else:
            logging.warning("class %d has no positive example: its AP is undefined (NaN, left out of the mean)", c)
    return out


def mean_ap(per_class: np.ndarray) -> float:
    """Mean of the defined per-class APs."""
    return float(np.nanmean(per_class))


__all__ = ["LOSSES", "Linear", "fit_linear", "standardization", "accuracy", "average_precision", "mean_ap"]
