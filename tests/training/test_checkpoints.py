"""Orbax checkpoints: round trip with the data iterator's position, fallback past a corrupt latest step, readers."""
import logging

import jax.numpy as jnp
import numpy as np
import pytest

from zfjax.training import checkpoints


def _state(v: float):
    return {"params": {"conv1": {"w": jnp.full((2, 2), v), "b": jnp.zeros(2)}}, "step": jnp.int32(v)}


def _write_two_steps(workdir, train_iterator):
    ckpts = checkpoints.Checkpoints(workdir)
    it = train_iterator()
    for step in (1, 2):
        next(it)
        ckpts.save(step, _state(step), it, {"xla_flags": "x"})
    ckpts.close()
    return next(it)["label"]


def _corrupt(step_dir):
    for f in (step_dir / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 3])


def test_restore_round_trips_state_and_iterator_position(train_iterator, tmp_path):
    third_batch = _write_two_steps(tmp_path, train_iterator)
    it = train_iterator()
    state, meta = checkpoints.Checkpoints(tmp_path).restore(_state(0), it)
    np.testing.assert_array_equal(state["params"]["conv1"]["w"], np.full((2, 2), 2.0))
    assert meta == {"xla_flags": "x"}
    np.testing.assert_array_equal(next(it)["label"], third_batch)
    assert checkpoints.latest(tmp_path)[0] == 2


def test_corrupt_latest_step_warns_and_falls_back(train_iterator, tmp_path, caplog):
    _write_two_steps(tmp_path, train_iterator)
    _corrupt(tmp_path / "checkpoints" / "2")
    with caplog.at_level(logging.WARNING):
        step, params = checkpoints.latest(tmp_path)
    assert step == 1 and "step 2" in caplog.text
    np.testing.assert_array_equal(params["conv1"]["w"], np.full((2, 2), 1.0))
    it = train_iterator()
    ckpts = checkpoints.Checkpoints(tmp_path)
    state, _ = ckpts.restore(_state(0), it)
    ckpts.close()
    np.testing.assert_array_equal(state["params"]["conv1"]["w"], np.full((2, 2), 1.0))
    assert not (tmp_path / "checkpoints" / "2").exists()  # deleted, so a re-run can write step 2 again


def test_readers_on_empty_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        checkpoints.latest(tmp_path)
    assert checkpoints.snapshots(tmp_path) == {}
