"""The worked example of "my own model": a Flax linen ResNet-style CNN (residual blocks, BatchNorm), trained on the
embedded Fashion-MNIST, and the model spec that gives it to every experiment.

    python -m experiments.flax_resnet --config=experiments/configs/flax_resnet.py --workdir=runs/flax_resnet
    python -m experiments.top9 --config=experiments/configs/top9.py \\
        --config.model=experiments.flax_resnet:network:runs/flax_resnet --workdir=runs/flax_resnet_top9

Nothing here knows zfjax's own networks: the model is ordinary Flax, trained with optax (BatchNorm in training
mode, its running statistics kept in ``batch_stats``) and saved with orbax after every epoch, optimizer state
included (a killed run resumes from the last finished epoch and ends with the same weights: each epoch's order is
seeded by its number). `network` turns a trained run into a
`zfjax.network.Network` with `zfjax.network.adapters`: BatchNorm runs in inference mode, the layers to show are the
post-ReLU outputs the model sows, the epoch snapshots feed the feature evolution. Its ReLUs are written three ways
(``nn.relu``, ``jnp.maximum(0., x)``, ``jnp.where(x > 0, x, 0)``); the rules find them all.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import functools
import pathlib
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from zfjax import files
from zfjax import network as zfjax_network
from zfjax.data import fashion_mnist
from zfjax.network import adapters

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's pixel mean and standard deviation (pixels in [0, 1])
LAYERS = ("stem", "block1", "block2", "block3")


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (a strided 1x1 conv-BN where the shape changes), then ReLU."""
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        y = norm()(nn.Conv(self.features, (3, 3), (self.stride, self.stride), padding=1, use_bias=False)(x))
        y = jnp.where(y > 0, y, 0)
        y = norm()(nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(y))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = norm()(nn.Conv(self.features, (1, 1), (self.stride, self.stride), use_bias=False)(x))
        out = jnp.maximum(0.0, x + y)
        self.sow("intermediates", "relu", out)
        return out


class ResNet(nn.Module):
    """A small ResNet for 28x28 grey images: stem, max pool, three residual blocks, global average pool, dense."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(16, (3, 3), padding=1, use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name="stem_bn")(x))
        self.sow("intermediates", "stem", x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = Block(16, name="block1")(x, train)
        x = Block(32, 2, name="block2")(x, train)
        x = Block(32, name="block3")(x, train)
        pooled = x.mean((1, 2))
        self.sow("intermediates", "pooled", pooled)
        return nn.Dense(self.num_classes, name="fc")(pooled)


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] -> network inputs (standardized)."""
    return ((np.asarray(pixels, np.float32) - MEAN) / STD).astype(np.float32)


def display(inputs: np.ndarray) -> np.ndarray:
    """Network inputs -> pixels in [0, 1]."""
    return np.asarray(inputs, np.float32) * STD + MEAN


def network(workdir: str = "runs/flax_resnet") -> zfjax_network.Network:
    """The model spec (``--config.model=experiments.flax_resnet:network:<workdir>``): the trained run in
    `workdir` as a `zfjax.network.Network` (FileNotFoundError saying how to train it when there is none)."""
    epochs = _epochs(workdir)
    if not epochs:
        raise FileNotFoundError(f"no trained Flax ResNet in {workdir}: train it with 'python -m "
                                f"experiments.flax_resnet --config=experiments/configs/flax_resnet.py "
                                f"--workdir={workdir}'")
    variables = _restore(workdir, epochs[-1])
    net = adapters.network(ResNet(), variables, input_shape=(28, 28, 1), name="flax_resnet",
                           layers=[f"{n}/relu" if n.startswith("block") else n for n in LAYERS],
                           preprocess=preprocess, display=display, class_names=fashion_mnist.CLASSES)
    snapshots = lambda: [(e, _restore(workdir, e)) for e in _epochs(workdir)]  # noqa: E731
    return zfjax_network.Network(**{**vars(net), "snapshots": snapshots})


def _manager(workdir: str | pathlib.Path):
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(pathlib.Path(workdir).resolve() / "checkpoints",
                                 options=ocp.CheckpointManagerOptions(create=True))


def _epochs(workdir: str | pathlib.Path) -> list[int]:
    if not (pathlib.Path(workdir) / "checkpoints").is_dir():
        return []
    with _manager(workdir) as manager:
        return sorted(manager.all_steps())


def _restore(workdir: str | pathlib.Path, epoch: int) -> dict:
    """The variables of epoch `epoch`."""
    return _restore_state(workdir, epoch)["variables"]


def _restore_state(workdir: str | pathlib.Path, epoch: int) -> dict:
    import orbax.checkpoint as ocp
    with _manager(workdir) as manager:
        return manager.restore(epoch, args=ocp.args.StandardRestore(_template()))


@functools.lru_cache(maxsize=1)
def _template() -> dict:
    """The checkpoint's structure: {"variables", "opt_state"} (the learning rate does not change it)."""
    variables = ResNet().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    state = {"variables": variables, "opt_state": _optimizer(0.1, 1).init(variables["params"])}
    return jax.tree.map(np.zeros_like, state)


def _optimizer(learning_rate: float, steps: int) -> optax.GradientTransformation:
    return optax.sgd(optax.cosine_decay_schedule(learning_rate, steps), momentum=0.9)


def _step(model: ResNet, tx: optax.GradientTransformation):
    @jax.jit
    def step(variables, opt_state, x, y):
        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                          train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates
        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
        deltas, opt_state = tx.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], deltas)
        return {"params": params, "batch_stats": updates["batch_stats"]}, opt_state, loss
    return step


def accuracy(variables: dict, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy of the trained model on uint8 images."""
    predict = jax.jit(lambda v, x: jnp.argmax(ResNet().apply(v, x), -1))
    hits = sum(int((np.asarray(predict(variables, preprocess(images[i:i + batch] / 255.0))) ==
                    labels[i:i + batch]).sum()) for i in range(0, len(images), batch))
    return hits / len(images)


def run(config: Any, workdir: pathlib.Path) -> dict:
    """Train (or resume) for ``config.epochs`` epochs; returns the run's summary (also in results.json)."""
    from tqdm import tqdm
    images, labels = fashion_mnist.load("train", config.data_dir or fashion_mnist.DEFAULT_DIR)
    images, labels = images[:config.train_subset or None], labels[:config.train_subset or None]
    steps = len(images) // config.batch_size
    tx = _optimizer(config.learning_rate, steps * config.epochs)
    done = _epochs(workdir)
    if done:
        state = _restore_state(workdir, done[-1])
        variables, opt_state = state["variables"], state["opt_state"]
    else:
        variables = ResNet().init(jax.random.key(config.seed), jnp.zeros((1, 28, 28, 1)))
        opt_state = tx.init(variables["params"])
    step = _step(ResNet(), tx)
    for epoch in range(len(done) + 1, config.epochs + 1):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(images))
        for i in tqdm(range(steps), desc=f"epoch {epoch}", unit="step", leave=False, file=sys.stderr):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            variables, opt_state, loss = step(variables, opt_state, preprocess(images[idx] / 255.0), labels[idx])
        _save(workdir, epoch, {"variables": variables, "opt_state": opt_state})
        logging.info("epoch %d: last training loss %.3f", epoch, float(loss))
    test_images, test_labels = fashion_mnist.load("test", config.data_dir or fashion_mnist.DEFAULT_DIR)
    summary = {"epochs": config.epochs, "train_images": len(images),
               "test_top1": accuracy(variables, test_images, test_labels)}
    files.write_json(pathlib.Path(workdir) / "results.json", summary)
    return summary


def _save(workdir: str | pathlib.Path, epoch: int, state: dict) -> None:
    import orbax.checkpoint as ocp
    with _manager(workdir) as manager:
        manager.save(epoch, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()


if __name__ == "__main__":
    from experiments import cli
    cli.main(lambda config, workdir: print(run(config, workdir)))
