"""Training of the paper's networks: state, optimizer, jit-compiled sharded steps, and the resumable loop.

The paper's recipe (docs/paper-facts.md): SGD with momentum 0.9 on softmax cross-entropy, dropout in fc6/fc7, filter
renormalization (`zfjax.training.renormalize`) after every update, learning rate annealed on plateau (or by steps).
One code path runs on 1 CPU, forced CPU devices, GPUs and many hosts: the batch is sharded along the mesh's
``data`` axis, parameters are replicated, and each host feeds its share of every global batch.

A run is a pure function of (config, XLA flags, device count): dropout keys come from ``fold_in(rng, step)``, data
order from the grain iterator's position, so a run resumed from a checkpoint ends with the same bits as a straight one.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zfjax.data import Data, pipeline
from zfjax.data import load as load_data
from zfjax.network import models
from zfjax.training import checkpoints, metrics
from zfjax.training.renormalize import renormalize

SCHEDULES = ("constant", "step", "plateau")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
class TrainState(struct.PyTreeNode):
    """Everything a training step changes: step count, parameters, optimizer state, and the raw rng key data."""
    step: jax.Array
    params: models.Params
    opt_state: optax.OptState
    rng: jax.Array


def build_arch(config: Any, data: Data) -> models.Arch:
    """The config's `Arch` for `data`: ``model`` + ``remove`` + ``model_overrides`` + ``init``/``dropout``."""
    overrides = config.model_overrides.to_dict()
    arch = models.get(config.model, remove=tuple(config.remove), num_classes=data.num_classes,
                      input_shape=data.input_shape, init=config.init, init_scale=config.init_scale, **overrides)
    if config.dropout is not None:
        arch = dataclasses.replace(arch, fcs=tuple(dataclasses.replace(f, dropout=config.dropout) for f in arch.fcs))
    return arch


def learning_rate_schedule(config: Any, steps_per_epoch: int) -> optax.Schedule:
    """Base learning rate against step: constant, or multiplied by ``lr_decay_factor`` at each of
    ``lr_decay_epochs`` ("step"). "plateau" uses a constant base scaled by `optax.contrib.reduce_on_plateau`."""
    if config.lr_schedule not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; choose one of {SCHEDULES}")
    if config.lr_schedule == "step":
        boundaries = {int(round(e * steps_per_epoch)): config.lr_decay_factor for e in config.lr_decay_epochs}
        return optax.piecewise_constant_schedule(config.learning_rate, boundaries)
    return optax.constant_schedule(config.learning_rate)


def make_optimizer(config: Any, steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
    """SGD + momentum (+ weight decay) on the schedule; "plateau" divides the rate by ``1/plateau_factor`` when the
    training loss averaged over an epoch has not improved for ``plateau_patience`` epochs (the paper's hand
    annealing, automated). Its `update` takes ``value=loss``."""
    parts = [optax.add_decayed_weights(config.weight_decay)] if config.weight_decay else []
    parts.append(optax.sgd(learning_rate_schedule(config, steps_per_epoch), momentum=config.momentum))
    if config.lr_schedule == "plateau":
        parts.append(optax.contrib.reduce_on_plateau(
            factor=config.plateau_factor, patience=config.plateau_patience, accumulation_size=steps_per_epoch))
    return optax.chain(*parts)


def current_learning_rate(config: Any, schedule: optax.Schedule, state: TrainState) -> float:
    """The rate used by the next step (the schedule times the plateau scale, if any)."""
    lr = float(schedule(int(state.step)))
    if config.lr_schedule == "plateau":
        lr *= float(optax.tree_utils.tree_get(state.opt_state, "scale"))
    return lr


def create_state(arch: models.Arch, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """Fresh state: `models.init` parameters (renormalized, as after every update) and zero optimizer state."""
    init_key, rng = jax.random.split(jax.random.key(seed))
    params, opt_state = _fresh(arch, tx, init_key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, rng=jax.random.key_data(rng))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fresh(arch: models.Arch, tx: optax.GradientTransformation, key: jax.Array):
    """Renormalized fresh parameters and the optimizer's initial state, as one compiled program."""
    params = renormalize(models.init(arch, key))
    return params, tx.init(params)


def _cast(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, arch: models.Arch,
               tx: optax.GradientTransformationExtraArgs, radius: float, dtype: Any = jnp.float32,
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on mean softmax cross-entropy, then filter renormalization; returns loss and accuracy.

    `dtype` is the compute precision (bfloat16 for speed on accelerators); parameters stay float32.
    """
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params: models.Params) -> tuple[jax.Array, jax.Array]:
        logits = models.apply(arch, _cast(params, dtype), batch["image"].astype(dtype), train=True, rng=rng).logits
        logits = logits.astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = renormalize(optax.apply_updates(state.params, updates), radius)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), {"loss": loss, "accuracy": accuracy}


def eval_step(params: models.Params, batch: dict[str, jax.Array], *, arch: models.Arch,
              dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """Sums over the batch of loss, top-1 and top-5 hits of the crop-averaged softmax; ``mask`` drops padding.

    ``batch["image"]`` is (N, crops, H, W, C): the softmax of every crop is computed and averaged per image.
    """
    n, crops = batch["image"].shape[:2]
    images = batch["image"].reshape(n * crops, *batch["image"].shape[2:]).astype(dtype)
    logits = models.apply(arch, _cast(params, dtype), images).logits.astype(jnp.float32)
    probs = jax.nn.softmax(logits).reshape(n, crops, -1).mean(1)
    label, mask = batch["label"], batch["mask"]
    true_prob = jnp.take_along_axis(probs, label[:, None], 1)[:, 0]
    rank = jnp.sum(probs > true_prob[:, None], axis=1)  # classes strictly more probable than the true one
    return {"loss": jnp.sum(-jnp.log(jnp.maximum(true_prob, 1e-30)) * mask), "top1": jnp.sum((rank < 1) * mask),
            "top5": jnp.sum((rank < 5) * mask), "count": jnp.sum(mask)}


def compile_steps(config: Any, arch: models.Arch, tx: Any, mesh: Mesh) -> tuple[Callable, Callable]:
    """(train_step, eval_step) jitted over `mesh`: batch sharded on ``data``, state replicated, state donated."""
    replicated, sharded = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    dtype = DTYPES[config.dtype]
    train = jax.jit(functools.partial(train_step, arch=arch, tx=tx, radius=config.radius, dtype=dtype),
                    in_shardings=(replicated, sharded), out_shardings=(replicated, replicated), donate_argnums=0)
    evaluate = jax.jit(functools.partial(eval_step, arch=arch, dtype=dtype),
                       in_shardings=(replicated, sharded), out_shardings=replicated)
    return train, evaluate


def evaluate(eval_fn: Callable, params: models.Params, data: Data, config: Any, mesh: Mesh) -> dict[str, float]:
    """Crop-averaged loss, top-1 and top-5 accuracy over the whole eval split."""
    sums: dict[str, float] = {}
    batches = pipeline.eval_batches(data.eval, data.eval_transform, global_batch=config.eval_batch_size,
                                    num_threads=config.num_data_threads)
    for batch in batches:
        out = jax.device_get(eval_fn(params, pipeline.to_global(batch, mesh)))
        sums = {k: sums.get(k, 0.0) + float(v) for k, v in out.items()}
    count = sums.pop("count")
    return {f"eval_{k}": v / count for k, v in sums.items()}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops without saving."""


def _check_config(config: Any, data: Data) -> None:
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; choose one of {sorted(DTYPES)}")
    for name in ("batch_size", "eval_batch_size", "log_every_steps", "checkpoint_every_steps", "num_epochs"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)}")
    for name in ("batch_size", "eval_batch_size"):
        if getattr(config, name) % jax.device_count():
            raise ValueError(f"{name} {getattr(config, name)} must be divisible by the {jax.device_count()} devices")
    if len(data.train) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(data.train)} training examples")


def _meta(config: Any) -> dict[str, Any]:
    return {"xla_flags": os.environ.get("XLA_FLAGS", ""), "config": json.loads(config.to_json_best_effort()),
            "device_count": jax.device_count()}


def checkpoint_bytes(config: Any, arch: models.Arch, tx: Any) -> int:
    """Bytes the run's checkpoints and snapshots will hold at most: ``keep_checkpoints`` + 1 train states (a new
    one is written before the oldest is removed) and one parameter set per snapshot epoch."""
    state = jax.eval_shape(lambda: create_state(arch, tx, 0))
    state_bytes, params_bytes = (sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))
                                 for tree in (state, state.params))
    return (config.keep_checkpoints + 1) * state_bytes + len(config.snapshot_epochs) * params_bytes


def _progress(start: int, stop: int) -> Any:
    from tqdm import tqdm
    return tqdm(initial=start, total=stop, unit="step", dynamic_ncols=True, disable=jax.process_index() != 0,
                mininterval=1.0, file=sys.stderr)


def train_and_evaluate(config: Any, workdir: str | pathlib.Path) -> TrainState:
    """Train (resuming from the latest checkpoint in `workdir`), evaluate, checkpoint, snapshot and log.

    Stops at step ``num_epochs * steps_per_epoch``, or earlier at ``max_steps`` (this run only: the learning-rate
    schedule always follows ``num_epochs``). Raises `NonFiniteLossError` naming the step if the loss is not finite;
    the checkpoints already written are kept. Before any work: `ValueError` for unknown config fields, and
    `checkpoints.WorkdirError` when another run holds `workdir` or it is unwritable or too full for the checkpoints.
    """
    workdir = pathlib.Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise checkpoints.WorkdirError(e.errno, f"cannot create workdir {workdir} ({e.strerror or e})",
                                       str(workdir)) from e
    with checkpoints.lock(workdir):
        state = _run(config, workdir)
    if jax.process_index() == 0 and (workdir / metrics.METRICS_FILE).is_file():
        metrics.plot_learning_curves(workdir)
    return state


def summary(workdir: str | pathlib.Path) -> str:
    """What a run left in `workdir`, in two lines: the network, its step and last eval; the files written."""
    workdir = pathlib.Path(workdir)
    record = checkpoints.read_network(workdir)
    m = {k: metrics.final(workdir / metrics.METRICS_FILE, k) for k in ("eval_top1", "eval_top5", "images_per_s")}
    text = f"trained {record.arch.name} ({models.count_params(record.arch):,} parameters) on {record.dataset}" \
        if record else "trained the network"
    step = checkpoints.latest_step(workdir)
    text += f" to step {step}"
    if m["eval_top1"] is not None:
        text += f": test top-1 {100 * m['eval_top1']:.2f}%, top-5 {100 * m['eval_top5']:.2f}%"
    if m["images_per_s"] is not None:
        text += f" ({m['images_per_s']:.0f} images/s at the end)"
    snaps = sorted(int(p.name) for p in (workdir / checkpoints.SNAPSHOTS).glob("[0-9]*"))
    files = [f"{checkpoints.CHECKPOINTS}/{step}"]
    files += [f"{checkpoints.SNAPSHOTS}/ (epochs {snaps})"] if snaps else []
    files += [f for f in (metrics.METRICS_FILE, metrics.CURVES_FILE, checkpoints.NETWORK_FILE)
              if (workdir / f).is_file()]
    files += ["TensorBoard events"] if any(workdir.glob("events.out.tfevents.*")) else []
    return f"{text}\nwrote {workdir}/: {', '.join(files)}"


def _run(config: Any, workdir: pathlib.Path) -> TrainState:
    """`train_and_evaluate` inside the workdir lock: checks, state, resume, loop."""
    data = load_data(config)
    _check_config(config, data)
    arch = build_arch(config, data)
    steps_per_epoch = len(data.train) // config.batch_size
    total = config.num_epochs * steps_per_epoch
    stop = min(total, config.max_steps) if config.max_steps else total
    mesh = pipeline.data_mesh()
    tx = make_optimizer(config, steps_per_epoch)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    checkpoints.preflight(workdir, checkpoint_bytes(config, arch, tx))
    state = jax.jit(create_state, static_argnums=(0, 1, 2), out_shardings=NamedSharding(mesh, PartitionSpec()))(
        arch, tx, config.seed)
    train_iter = pipeline.train_iterator(data.train, data.train_transform, global_batch=config.batch_size,
                                         seed=config.seed, num_threads=config.num_data_threads)
    ckpts = checkpoints.Checkpoints(workdir, keep=config.keep_checkpoints)
    writer = metrics.Writer(workdir, enabled=jax.process_index() == 0)
    try:
        restored = ckpts.restore(state, train_iter)
        if restored is not None:
            state, meta = restored
            if meta.get("xla_flags") != os.environ.get("XLA_FLAGS", ""):
                logging.warning("resuming under XLA_FLAGS=%r, the checkpoint was written under %r: results will "
                                "not be bit-identical to an uninterrupted run", os.environ.get("XLA_FLAGS", ""),
                                meta.get("xla_flags"))
            logging.info("resumed from step %d in %s", int(state.step), workdir)
        if jax.process_index() == 0:  # after the restore: a workdir of another network keeps its record
            checkpoints.save_network(workdir, checkpoints.NetworkRecord(arch, data.mean, np.float32(config.pixel_scale),
                                                                        data.name))
        train_fn, eval_fn = compile_steps(config, arch, tx, mesh)
        state = _loop(config, data, arch, mesh, state, train_iter, train_fn, eval_fn, ckpts, writer, schedule,
                      steps_per_epoch, total, stop)
    finally:
        ckpts.close()
        writer.close()
    return state


def _loop(config, data, arch, mesh, state, train_iter, train_fn, eval_fn, ckpts, writer, schedule,
          steps_per_epoch, total, stop) -> TrainState:
    """The step loop (see `train_and_evaluate`). Losses are fetched one step late so the device never idles."""
    start = int(state.step)
    flops_per_image = 3 * 2 * sum(models.macs(arch).values())  # forward + backward ~ 3 forwards
    eval_every = config.eval_every_steps or steps_per_epoch
    snapshot_steps = {e * steps_per_epoch: e for e in config.snapshot_epochs}
    bar = _progress(start, stop)
    window: list[dict[str, float]] = []
    pending: tuple[int, Any] | None = None
    clock, clock_step = time.perf_counter(), start

    def fetch() -> None:
        nonlocal pending
        if pending is None:
            return
        step, m = pending
        pending = None
        m = {k: float(v) for k, v in jax.device_get(m).items()}
        if not math.isfinite(m["loss"]):
            raise NonFiniteLossError(
                f"training loss is {m['loss']} at step {step}; stopped without saving. The last good checkpoint in "
                f"{ckpts.steps.directory} "
                f"(step {ckpts.steps.latest_step()}) is kept; lower learning_rate or check the data.")
        window.append(m)
        bar.update(1)

    for step in range(start + 1, stop + 1):
        batch = pipeline.to_global(next(train_iter), mesh)
        new_state, m = train_fn(state, batch)
        fetch()
        state, pending = new_state, (step, m)
        boundary = step == stop or step % config.log_every_steps == 0 or step % eval_every == 0 or \
            step % config.checkpoint_every_steps == 0 or step in snapshot_steps
        if not boundary:
            continue
        fetch()
        if step % config.log_every_steps == 0 or step == stop:
            now = time.perf_counter()
            images_per_s = (step - clock_step) * config.batch_size / max(now - clock, 1e-9)
            scalars = {f"train_{k}": float(np.mean([w[k] for w in window])) for k in window[0]}
            scalars.update(learning_rate=current_learning_rate(config, schedule, state), images_per_s=images_per_s,
                           tflops_per_s=images_per_s * flops_per_image / 1e12, epoch=step / steps_per_epoch)
            writer.write(step, scalars)
            bar.set_postfix(loss=f"{scalars['train_loss']:.3f}", img_s=f"{images_per_s:.0f}",
                            tflops=f"{scalars['tflops_per_s']:.3f}")
            window, clock, clock_step = [], now, step
        if step % eval_every == 0 or step == total or step == stop:
            result = evaluate(eval_fn, state.params, data, config, mesh)
            writer.write(step, result)
            logging.info("step %d: eval top-1 %.4f top-5 %.4f", step, result["eval_top1"], result["eval_top5"])
            clock = time.perf_counter()
        if step in snapshot_steps:
            ckpts.save_snapshot(snapshot_steps[step], state.params)
        if step % config.checkpoint_every_steps == 0 or step == stop:
            ckpts.save(step, state, train_iter, _meta(config))
    fetch()
    bar.close()
    return state
