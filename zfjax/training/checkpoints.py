"""Orbax checkpoints of a training run: resume state, epoch snapshots, and readers for the experiments.

Layout of a workdir: ``checkpoints/<step>/`` holds the train state (params, optimizer state, step, rng), the grain
iterator's position (``data``, one file per host) and ``meta`` (the XLA_FLAGS in force and the config); steps are
committed by orbax's atomic rename. ``snapshots/<epoch>/`` holds the parameters at the config's
``snapshot_epochs`` (Fig. 4's feature evolution). ``network.json`` (and ``input_mean.npy``) record the network the
checkpoints are of: its `Arch`, the input normalization and the dataset (`save_network`, `read_network`), so that
the weights load as a network with no config in hand (`zfjax.training.trained.load_net`).

Readers and the writer register a handler for every item a step holds (orbax warns about items it cannot
restore otherwise) and open the directories without orbax's ``read_only`` option (which warns on every open).

Reliability (see `lock`, `preflight`, `Checkpoints.restore`): one run per workdir (an ``fcntl.flock`` on
``.lock.<process>``, released by the kernel when the process dies, so a killed run never leaves a stale lock);
unwritable or full workdirs fail before training starts; a truncated or corrupt step is moved aside to
``checkpoints_unreadable/`` with a warning and the previous step is used; a step written for another network raises
`ValueError` naming the first mismatching array and both shapes, and is left untouched.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import pathlib
import shutil
import socket
import time
from typing import Any, Iterator, NamedTuple

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from zfjax import files
from zfjax.network import models

CHECKPOINTS, SNAPSHOTS, UNREADABLE = "checkpoints", "snapshots", "checkpoints_unreadable"
# What a damaged step raises at restore (orbax does not check steps when listing them). Tensorstore reports a
# truncated or missing array file as a plain `Exception`, so anything short of BaseException counts.
CORRUPT_ERRORS = (Exception,)
PROBE_BYTES = 4 << 20
NETWORK_FILE, MEAN_FILE = "network.json", "input_mean.npy"


class WorkdirError(OSError):
    """The workdir cannot hold this run: in use by another run, not writable, or too little free space."""


def _manager(directory: pathlib.Path, max_to_keep: int | None = None, create: bool = True) -> ocp.CheckpointManager:
    """A manager of `directory` that knows the handler of every item a step may hold (see the module docstring)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    handlers = {"state": ocp.StandardCheckpointHandler(), "params": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()}
    return ocp.CheckpointManager(directory.absolute(), options=options, item_handlers=handlers)


class Checkpoints:
    """The resume checkpoints (last `keep` steps) and the epoch snapshots of one workdir."""

    def __init__(self, workdir: str | pathlib.Path, keep: int = 3):
        workdir = pathlib.Path(workdir)
        self.steps = _manager(workdir / CHECKPOINTS, max_to_keep=keep)
        self.snaps = _manager(workdir / SNAPSHOTS)

    def save(self, step: int, state: Any, data_iter: grain.DatasetIterator, meta: dict[str, Any]) -> None:
        """Start writing step `step` (asynchronous; `close` waits for it)."""
        self.steps.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave(meta)))

    def save_snapshot(self, epoch: int, params: Any) -> None:
        self.snaps.save(epoch, args=ocp.args.Composite(params=ocp.args.StandardSave(params)))

    def restore(self, state: Any, data_iter: grain.DatasetIterator) -> tuple[Any, dict[str, Any]] | None:
        """(state, meta) of the newest readable step, with `data_iter` moved to its position; None if there is none.

        A step that fails to restore (truncated, corrupt) is logged, moved to ``checkpoints_unreadable/`` and the
        previous one tried. A readable step whose arrays do not fit `state` (another network) raises `ValueError`.
        """
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        for step in reversed(self.steps.all_steps()):
            try:
                stored = self.steps.item_metadata(step)["state"]
            except CORRUPT_ERRORS as e:
                self._set_aside(step, e)
                continue
            check_compatible(stored, target, f"checkpoint step {step} in {self.steps.directory}")
            try:
                out = self.steps.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(data_iter),
                    meta=ocp.args.JsonRestore()))
            except CORRUPT_ERRORS as e:
                self._set_aside(step, e)
                continue
            return out["state"], out["meta"]
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        """Warn and move an unreadable step out of the way (kept for inspection), so training can redo it."""
        directory = pathlib.Path(self.steps.directory)
        aside = directory.parent / UNREADABLE / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        logging.warning("checkpoint step %d in %s is unreadable (%s: %s); moving it to %s and falling back to the "
                        "previous one", step, directory, type(error).__name__, str(error)[:500], aside)
        if jax.process_index() == 0 and (directory / str(step)).exists():
            aside.parent.mkdir(exist_ok=True)
            os.replace(directory / str(step), aside)
        self.steps.reload()

    def close(self) -> None:
        """Wait for pending writes and release the managers (call before exit, also on errors)."""
        for m in (self.steps, self.snaps):
            m.wait_until_finished()
            m.close()


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"params/conv1/w": shape} for every array of a pytree or of orbax's stored tree metadata."""
    def name(key: Any) -> str:
        return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
    return {"/".join(name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_compatible(stored: Any, target: Any, what: str) -> None:
    """ValueError naming the first array whose stored shape differs from `target`'s (a checkpoint of another
    network or optimizer), or that exists on only one side."""
    have, want = _shapes(stored), _shapes(target)
    for key in sorted(set(have) | set(want), key=lambda k: (not k.startswith("params/"), k)):
        if have.get(key) != want.get(key):
            there, here = (f"shape {d[key]}" if key in d else "absent" for d in (have, want))
            raise ValueError(f"{what} does not fit this run (written for another network or optimizer): {key} "
                             f"has {there} in the checkpoint and {here} in this run. Use a new workdir, or the "
                             f"config that wrote it.")


def _restore_params(mngr: ocp.CheckpointManager, step: int, item: str) -> Any:
    """The params of `item` at `step` on this process's first device, whatever topology wrote them."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          mngr.item_metadata(step)[item])
    out = mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))[item]
    return out["params"] if item == "state" else out


def latest(workdir: str | pathlib.Path) -> tuple[int, Any]:
    """(step, params) of the newest readable checkpoint in `workdir`; unreadable steps are skipped with a warning."""
    directory = pathlib.Path(workdir) / CHECKPOINTS
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoints in {workdir}: {directory} does not exist (train first)")
    mngr = _manager(directory, create=False)
    try:
        for step in reversed(mngr.all_steps()):
            try:
                return step, _restore_params(mngr, step, "state")
            except CORRUPT_ERRORS as e:
                logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one", step,
                                directory, e)
    finally:
        mngr.close()
    raise FileNotFoundError(f"no readable checkpoint in {directory}")


def latest_step(workdir: str | pathlib.Path) -> int | None:
    """The newest committed step of `workdir` (not read: it may still turn out unreadable); None when none.

    Read from the directory names (orbax commits a step by renaming its temporary folder to the bare number), not
    through a `CheckpointManager`: creating one synchronizes all processes, and this may run on one of them."""
    directory = pathlib.Path(workdir) / CHECKPOINTS
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max(steps, default=None)


def latest_meta(workdir: str | pathlib.Path) -> dict[str, Any]:
    """The ``meta`` of the newest checkpoint whose meta is readable (the config of a training run, the source of
    imported weights); {} when no step has one."""
    mngr = _manager(pathlib.Path(workdir) / CHECKPOINTS, create=False)
    try:
        for step in reversed(mngr.all_steps()):
            try:
                return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"] or {}
            except CORRUPT_ERRORS:
                continue
    finally:
        mngr.close()
    return {}


def snapshots(workdir: str | pathlib.Path) -> dict[int, Any]:
    """{epoch: params} of every parameter snapshot in `workdir` (the config's ``snapshot_epochs`` reached so far)."""
    directory = pathlib.Path(workdir) / SNAPSHOTS
    if not directory.is_dir():
        return {}
    mngr = _manager(directory, create=False)
    try:
        return {epoch: _restore_params(mngr, epoch, "params") for epoch in mngr.all_steps()}
    finally:
        mngr.close()


class NetworkRecord(NamedTuple):
    """What a workdir records about the network of its checkpoints: the architecture, the input normalization
    ``(pixel - mean) * scale`` (pixels in [0, 255]; `mean` per pixel (H, W, C) or per channel (C,); `scale` a number
    or one per channel) and the dataset it was trained on ("" when unknown, e.g. imported weights)."""
    arch: models.Arch
    mean: np.ndarray
    scale: np.ndarray
    dataset: str


def save_network(workdir: str | pathlib.Path, record: NetworkRecord) -> pathlib.Path:
    """Atomically write ``network.json`` and ``input_mean.npy`` into `workdir` (the mean first, so a record never
    names a mean that is not there)."""
    workdir = pathlib.Path(workdir)
    with files.atomic_path(workdir / MEAN_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(record.mean, np.float32))
    return files.write_json(workdir / NETWORK_FILE, {
        "arch": models.to_dict(record.arch), "dataset": record.dataset,
        "scale": np.asarray(record.scale, np.float32).tolist(), "mean_file": MEAN_FILE})


def read_network(workdir: str | pathlib.Path) -> NetworkRecord | None:
    """The `NetworkRecord` of `workdir`, None when it has none (a run from before records existed); ValueError
    naming the file when it is unreadable."""
    path = pathlib.Path(workdir) / NETWORK_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        mean = np.load(path.parent / d["mean_file"])
        arch = models.from_dict(d["arch"])
        return NetworkRecord(arch, mean, np.asarray(d["scale"], np.float32), str(d["dataset"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"network record {path} is unreadable ({type(e).__name__}: {e}); delete it to fall back "
                         f"on the training config stored in the checkpoints") from None


def save_params(workdir: str | pathlib.Path, params: Any, meta: dict[str, Any], step: int = 0) -> pathlib.Path:
    """Write `params` as checkpoint `step` of an empty `workdir`, in the layout `latest` reads (imported weights)."""
    directory = pathlib.Path(workdir) / CHECKPOINTS
    mngr = _manager(directory)
    if mngr.all_steps():
        steps = mngr.all_steps()
        mngr.close()
        raise WorkdirError(errno.EEXIST, f"{directory} already holds checkpoints {steps}: choose an empty workdir")
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params}),
                                            meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()
    mngr.close()
    return directory / str(step)


@contextlib.contextmanager
def lock(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Hold an exclusive ``fcntl.flock`` on ``workdir/.lock.<process index>`` while the body runs.

    A second run on the same workdir gets `WorkdirError` naming the holder (pid, host, start time). The kernel
    drops the lock when its process exits, however it dies (SIGKILL, OOM, preemption), so a lock file left behind
    never blocks a restart. One file per process lets the processes of one multi-host run share a workdir.
    """
    path = pathlib.Path(workdir) / f".lock.{jax.process_index()}"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WorkdirError(e.errno, f"cannot write to workdir {workdir} ({e.strerror or e}): make it writable or "
                                    f"choose another workdir", str(path)) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            raise WorkdirError(errno.EBUSY, f"workdir {workdir} is in use by another run ({holder}); wait for it to "
                                            f"finish or choose another workdir", str(path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def _dir_bytes(directory: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) if directory.is_dir() else 0


def preflight(workdir: str | pathlib.Path, need_bytes: int) -> None:
    """`WorkdirError` now, before training, if `workdir` cannot take a written-and-synced probe file of 4 MB or has
    less free space than `need_bytes` minus what its checkpoints and snapshots already use."""
    workdir = pathlib.Path(workdir)
    probe = workdir / f".probe.{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise WorkdirError(e.errno, f"cannot write to workdir {workdir} ({e.strerror or e}): make it writable, "
                                    f"free space, or choose another workdir", str(probe)) from e
    finally:
        probe.unlink(missing_ok=True)
    free = shutil.disk_usage(workdir).free
    need = need_bytes - _dir_bytes(workdir / CHECKPOINTS) - _dir_bytes(workdir / SNAPSHOTS)
    if free < need:
        raise WorkdirError(errno.ENOSPC, f"workdir {workdir} has {free / 2**20:.1f} MiB free, but this run's "
                                         f"checkpoints and snapshots need {need / 2**20:.1f} MiB more: free space or "
                                         f"lower keep_checkpoints / snapshot_epochs", str(workdir))
