"""Classifiers on frozen features and nets trained from scratch: the transfer experiments (Tables 4-7, Fig. 9).

- `fit_linear`: a softmax (multi-class) or one-vs-all logistic (multi-label, Table 6) layer with L2, trained full
  batch with optax's L-BFGS on standardized features; the standardization is folded back into the weights, so the
  returned `Linear` applies to the raw features and can become the network's new ``fc8`` (`with_head`).
- `transfer_params`: the paper's transfer: layers 1-7 of a trained net kept frozen, a new softmax on their fc7.
- `train_scratch`: the same network trained from random init on the same few images (the paper's "scratch" rows),
  reusing `zfjax.training.train`'s step (SGD + momentum, filter renormalization).
- `average_precision` / `mean_ap`: per-class AP (scikit-learn) and their mean (Table 6).
- `load_pretrained`, `load_dataset`, `paper_layers`: the trained net, the datasets, the paper's "layer k".
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zfjax.analyses import features
from zfjax.data import transfer as transfer_data
from zfjax.network import models
from zfjax.training import checkpoints, train, trained

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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over splits, as "mean ± std" in the paper's tables."""
    return float(np.mean(values)), float(np.std(values))


def fmt(values: Sequence[float], scale: float = 100.0) -> str:
    """"mean ± std" of `values` (in percent by default), one decimal as in the paper."""
    m, s = mean_std(values)
    return f"{scale * m:.1f} ± {scale * s:.1f}"


def paper_layers(arch: models.Arch) -> tuple[str, ...]:
    """The activation the paper calls "layer k" for each layer: a conv's pooled (and normalized) map where it has
    a pool, else the conv map; then the hidden fc layers. For ZFNet: pool1, pool2, conv3, conv4, pool5, fc6, fc7."""
    return tuple(c.pool_name if c.pool else c.name for c in arch.convs) + tuple(f.name for f in arch.fcs)


def load_pretrained(train_config: Any, workdir: str | pathlib.Path, *, train_if_missing: bool) -> trained.Net:
    """The newest checkpoint of the training run in `workdir` as a `zfjax.training.trained.Net` (architecture and input
    normalization as the run recorded them), trained there first with `train_config` when it has none and
    `train_if_missing` (else FileNotFoundError saying how to train it). ValueError for an empty `workdir`."""
    if not str(workdir):
        raise ValueError("no pre-trained network: set --config.pretrain_workdir=<workdir of a train_imagenet run>")
    workdir = pathlib.Path(workdir)
    if not (workdir / checkpoints.CHECKPOINTS).is_dir():
        if not train_if_missing:
            raise FileNotFoundError(f"no trained network in {workdir}: train one with python -m "
                                    f"experiments.train_imagenet --config=<its config> --workdir={workdir}")
        logging.warning("no checkpoint in %s: training the %s net there first (%d epochs; the Fashion-MNIST net "
                        "takes 7-15 min on 2 CPU cores)", workdir, train_config.model, train_config.num_epochs)
        train.train_and_evaluate(train_config, workdir)
    return trained.load_net(workdir)


DATASETS = ("digits", "caltech101", "caltech256")


def load_dataset(name: str, data_dir: str = "") -> transfer_data.Labelled:
    """A single-label transfer dataset by name (see `zfjax.data.transfer`); `data_dir` "" means its default."""
    if name == "digits":
        return transfer_data.digits()
    if name == "caltech101":
        return transfer_data.caltech101(data_dir or None)
    if name == "caltech256":
        return transfer_data.image_folder(pathlib.Path(data_dir or "~/caltech256/256_ObjectCategories").expanduser())
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def read_hashes(path: str | pathlib.Path) -> set[str]:
    """Image hashes (`zfjax.data.transfer.image_hash`), one per line, e.g. of the pre-training images."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hash list {path} does not exist (one image_hash per line)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


class Prepared(NamedTuple):
    """A transfer experiment's inputs: the dataset (de-duplicated), the pre-trained net, and the network inputs."""
    data: transfer_data.Labelled
    net: trained.Net
    x: np.ndarray
    dropped: int


def prepare(config: Any) -> Prepared:
    """Load ``config.dataset`` and the net of ``config.pretrain_workdir``, drop images listed in
    ``config.hashes_file`` (if set), and turn the images into the net's input space."""
    data = load_dataset(config.dataset, config.data_dir)
    net = load_pretrained(config.pretrain, config.pretrain_workdir, train_if_missing=config.train_if_missing)
    dropped = 0
    if config.hashes_file:
        data, dropped = transfer_data.drop_duplicates(data, read_hashes(config.hashes_file))
    return Prepared(data, net, net.inputs([data.images[i] for i in range(len(data.labels))]), dropped)
