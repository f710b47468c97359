"""Orbax checkpoints of a training run: resume state, epoch snapshots, and readers for the experiments.

Layout of a workdir: ``checkpoints/<step>/`` holds the train state (params, optimizer state, step, rng), the grain
iterator's position (``data``, one file per host) and ``meta`` (the XLA_FLAGS in force and the config); steps are
committed by orbax's atomic rename. ``snapshots/<epoch>/`` holds the parameters at the config's
``snapshot_epochs`` (Fig. 4's feature evolution).
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

CHECKPOINTS, SNAPSHOTS = "checkpoints", "snapshots"
# What a damaged step raises at restore (orbax does not check steps when listing them).
CORRUPT_ERRORS = (ValueError, FileNotFoundError, OSError, KeyError, TypeError)


def _manager(directory: pathlib.Path, max_to_keep: int | None = None, read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only, read_only=read_only)
    handlers = {item: ocp.StandardCheckpointHandler() for item in ("state", "params")} if read_only else None
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

        A step that fails to restore (truncated, corrupt) is logged, deleted and the previous one tried.
        """
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        for step in reversed(self.steps.all_steps()):
            try:
                out = self.steps.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), data=grain.checkpoint.CheckpointRestore(data_iter),
                    meta=ocp.args.JsonRestore()))
            except CORRUPT_ERRORS as e:
                logging.warning("checkpoint step %d in %s is unreadable (%s: %s); deleting it and falling back to "
                                "the previous one", step, self.steps.directory, type(e).__name__, e)
                self.steps.delete(step)
                continue
            return out["state"], out["meta"]
        return None

    def close(self) -> None:
        """Wait for pending writes and release the managers (call before exit, also on errors)."""
        for m in (self.steps, self.snaps):
            m.wait_until_finished()
            m.close()


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
    mngr = _manager(directory, read_only=True)
    for step in reversed(mngr.all_steps()):
        try:
            return step, _restore_params(mngr, step, "state")
        except CORRUPT_ERRORS as e:
            logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one", step, directory, e)
    raise FileNotFoundError(f"no readable checkpoint in {directory}")


def snapshots(workdir: str | pathlib.Path) -> dict[int, Any]:
    """{epoch: params} of every parameter snapshot in `workdir` (the config's ``snapshot_epochs`` reached so far)."""
    directory = pathlib.Path(workdir) / SNAPSHOTS
    if not directory.is_dir():
        return {}
    mngr = _manager(directory, read_only=True)
    return {epoch: _restore_params(mngr, epoch, "params") for epoch in mngr.all_steps()}
