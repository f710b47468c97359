"""Transfer to a new dataset (Tables 4, 5, 7, Fig. 9): a trained net's frozen layers with a new softmax, and the same
net trained from scratch on the same few images.

- `transfer_params`: the paper's transfer: layers 1-7 of a trained net kept frozen, a new softmax
  (`zfjax.analyses.probe.fit_linear`) on their fc7 features; `with_head` puts any `Linear` in place of ``fc8``.
- `train_scratch`: the same network trained from random init on the same few images (the paper's "scratch" rows),
  reusing `zfjax.training.train`'s step (SGD + momentum, filter renormalization).
- `extract_all` / `predict`: features and logits of an in-memory array, in batches.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zfjax.analyses import features
from zfjax.analyses.probe import Linear, fit_linear
from zfjax.network import models
from zfjax.training import train


def with_head(arch: models.Arch, params: models.Params, head: Linear) -> tuple[models.Arch, models.Params]:
    """`arch`/`params` with ``fc8`` replaced by `head` (and ``num_classes`` by its outputs); other layers shared."""
    new_arch = dataclasses.replace(arch, num_classes=int(head.w.shape[1]))
    new_params = {**params, "fc8": {"w": jnp.asarray(head.w), "b": jnp.asarray(head.b)}}
    models.check_params(new_arch, new_params)
    return new_arch, new_params


def transfer_params(arch: models.Arch, params: models.Params, feats: np.ndarray, labels: np.ndarray, *,
                    num_classes: int, l2: float, steps: int) -> tuple[models.Arch, models.Params, Linear]:
    """The paper's transfer: layers 1-7 frozen, a new softmax fitted on their fc7 features `feats` (N, D)."""
    head = fit_linear(feats, labels, l2=l2, steps=steps, num_classes=num_classes)
    new_arch, new_params = with_head(arch, params, head)
    return new_arch, new_params, head


def batches(x: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of `x` of at most `size` rows."""
    for i in range(0, len(x), size):
        yield x[i:i + size]


def extract_all(arch: models.Arch, params: models.Params, x: np.ndarray, layer: str, *, batch_size: int = 256,
                grid: int | None = 4) -> np.ndarray:
    """`features.extract` of `layer` over an in-memory array `x`."""
    return features.extract(arch, params, batches(x, batch_size), layer, grid=grid)


@functools.partial(jax.jit, static_argnames=("arch",))
def _logits(arch: models.Arch, params: models.Params, x: jax.Array) -> jax.Array:
    return models.apply(arch, params, x).logits


def predict(arch: models.Arch, params: models.Params, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of the network for every row of `x` (evaluation mode: no dropout)."""
    return np.concatenate([np.asarray(_logits(arch, params, jnp.asarray(b))) for b in batches(x, batch_size)])


class ScratchConfig(NamedTuple):
    """SGD for training a net from scratch on few images: `epochs` passes (at least `min_steps` steps)."""
    epochs: int = 100
    min_steps: int = 200
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    radius: float = 1.0
    seed: int = 0


@functools.lru_cache(maxsize=None)
def _scratch_step(arch: models.Arch, cfg: ScratchConfig):
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(cfg.learning_rate, cfg.momentum))
    return tx, jax.jit(functools.partial(train.train_step, arch=arch, tx=tx, radius=cfg.radius), donate_argnums=0)


def train_scratch(arch: models.Arch, x: np.ndarray, labels: np.ndarray, cfg: ScratchConfig) -> models.Params:
    """Train `arch` from random init on (x, labels) with `zfjax.training.train.train_step`; returns the final params."""
    if len(x) != len(labels) or len(x) == 0:
        raise ValueError(f"need as many labels as images (> 0), got {len(x)} images and {len(labels)} labels")
    tx, step = _scratch_step(arch, cfg)
    state = train.create_state(arch, tx, cfg.seed)
    batch = min(cfg.batch_size, len(x))
    per_epoch = len(x) // batch
    rng = np.random.default_rng(cfg.seed)
    for _ in range(max(cfg.epochs, -(-cfg.min_steps // per_epoch))):
        order = rng.permutation(len(x))
        for k in range(per_epoch):
            idx = order[k * batch:(k + 1) * batch]
            state, _ = step(state, {"image": jnp.asarray(x[idx]), "label": jnp.asarray(labels[idx], jnp.int32)})
    return jax.device_get(state.params)


__all__ = ["with_head", "transfer_params", "batches", "extract_all", "predict", "ScratchConfig", "train_scratch"]
