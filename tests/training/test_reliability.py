"""Faults a long run meets: a second run on the workdir (lock), a killed lock holder, an unwritable or full workdir,
a truncated checkpoint, a torn metrics row; and importing trained weights into a workdir."""
import errno
import logging
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import import_weights
from zfjax.network import models, weights
from zfjax.training import checkpoints, metrics, train

SMALL = models.get("small")  # what --arch=small builds


def _params():
    return jax.device_get(models.init(SMALL, jax.random.key(3)))


def _assert_params_equal(got, want):
    models.check_params(SMALL, got)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_import_weights_from_safetensors_and_pth_is_what_latest_returns(tmp_path):
    torch = pytest.importorskip("torch")
    params = _params()
    weights.save(params, tmp_path / "w.safetensors", SMALL)
    torch.save({k: torch.from_numpy(v.copy()) for k, v in weights.to_torch(params, SMALL).items()}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        out = import_weights.import_weights(tmp_path / name, tmp_path / name[2:], "small", layout="named",
                                            num_classes=10)
        step, got = checkpoints.latest(tmp_path / name[2:])
        assert step == 0 and out == tmp_path / name[2:] / "checkpoints" / "0"
        _assert_params_equal(got, params)
    with pytest.raises(checkpoints.WorkdirError, match=r"already holds checkpoints \[0\]: choose an empty"):
        import_weights.import_weights(tmp_path / "w.safetensors", tmp_path / "safetensors", "small")


def test_import_weights_command_line(repo_root, subprocess_env, tmp_path):
    params = _params()
    weights.save(params, tmp_path / "w.safetensors", SMALL)
    done = subprocess.run([sys.executable, "-m", "experiments.import_weights", f"--weights={tmp_path}/w.safetensors",
                           f"--workdir={tmp_path}/run", "--arch=small", "--step=7"], cwd=repo_root,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    step, got = checkpoints.latest(tmp_path / "run")
    assert step == 7
    _assert_params_equal(got, params)


def test_second_run_refuses_the_workdir_until_the_holder_dies(repo_root, subprocess_env, tiny_config, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from zfjax.training import checkpoints\n"
         "with checkpoints.lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(300)", str(tmp_path)],
        cwd=repo_root, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(checkpoints.WorkdirError, match=rf"in use by another run \(pid {holder.pid} on "):
            train.train_and_evaluate(tiny_config(), tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock.0"]  # refused before writing anything
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / ".lock.0").read_text()  # the dead holder's lock file is still there
    with checkpoints.lock(tmp_path):  # ... and does not block a restart
        assert f"pid {os.getpid()}" in (tmp_path / ".lock.0").read_text()
        with pytest.raises(checkpoints.WorkdirError, match="in use by another run"):
            with checkpoints.lock(tmp_path):
                pass


def _written(workdir):
    return sorted(p.name for p in workdir.iterdir() if not p.name.startswith(".lock")) if workdir.is_dir() else []


def test_uncreatable_or_unwritable_workdir_fails_before_training(tiny_config, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(checkpoints.WorkdirError, match="cannot create workdir"):
        train.train_and_evaluate(tiny_config(), tmp_path / "file" / "run")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "fsync", full)  # the probe write hits a full disk
    with pytest.raises(checkpoints.WorkdirError, match=r"cannot write to workdir .* \(No space left on device\)"):
        train.train_and_evaluate(tiny_config(), tmp_path / "run")
    assert _written(tmp_path / "run") == []


def test_too_little_free_space_fails_before_training(tiny_config, tmp_path, monkeypatch):
    c = tiny_config()
    data = train.load_data(c)
    arch = train.build_arch(c, data)
    n_params = models.count_params(arch)  # the state holds params + SGD momentum (+ step, rng, count: < 64 bytes)
    need = (c.keep_checkpoints + 1) * 2 * 4 * n_params + len(c.snapshot_epochs) * 4 * n_params
    real = checkpoints.shutil.disk_usage
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: real(p)._replace(free=need - 1024))
    with pytest.raises(checkpoints.WorkdirError, match=rf"MiB free, but this run's checkpoints and snapshots need "
                                                       rf"{need / 2**20:.1f} MiB"):
        train.train_and_evaluate(c, tmp_path)
    assert _written(tmp_path) == []
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: real(p)._replace(free=need + 1024))
    checkpoints.preflight(tmp_path, train.checkpoint_bytes(c, arch, train.make_optimizer(c, 16)))


def _random_state(v: int):
    w = np.random.default_rng(v).normal(size=(256, 256)).astype(np.float32)  # large enough for its own data file
    return {"params": {"conv1": {"w": jnp.asarray(w), "b": jnp.zeros(2)}}, "step": jnp.int32(v)}


def test_truncated_latest_checkpoint_warns_and_falls_back(train_iterator, tmp_path, caplog):
    ckpts = checkpoints.Checkpoints(tmp_path)
    it = train_iterator()
    for step in (1, 2):
        next(it)
        ckpts.save(step, _random_state(step), it, {})
    ckpts.close()
    files = [f for f in (tmp_path / "checkpoints" / "2").rglob("*") if f.is_file()]
    biggest = max(files, key=lambda f: f.stat().st_size)
    assert biggest.stat().st_size > 256 * 256 * 2  # the array data (compressed)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])  # as if the disk filled mid-write
    want = np.asarray(_random_state(1)["params"]["conv1"]["w"])
    with caplog.at_level(logging.WARNING):
        step, params = checkpoints.latest(tmp_path)
    assert step == 1 and "step 2" in caplog.text
    np.testing.assert_array_equal(params["conv1"]["w"], want)
    ckpts = checkpoints.Checkpoints(tmp_path)
    state, _ = ckpts.restore(_random_state(0), train_iterator())
    ckpts.save(2, _random_state(5), train_iterator(), {})  # the step can be written again
    ckpts.close()
    np.testing.assert_array_equal(state["params"]["conv1"]["w"], want)
    assert [p.name.split("-")[0] for p in (tmp_path / checkpoints.UNREADABLE).iterdir()] == ["2"]  # kept aside
    assert checkpoints.latest(tmp_path)[0] == 2


def test_checkpoint_of_another_network_raises_naming_the_array_and_is_kept(train_iterator, tmp_path):
    ckpts = checkpoints.Checkpoints(tmp_path)
    ckpts.save(1, _random_state(1), train_iterator(), {})
    ckpts.close()
    other = {"params": {"conv1": {"w": jnp.zeros((128, 256)), "b": jnp.zeros(2)}}, "step": jnp.int32(0)}
    ckpts = checkpoints.Checkpoints(tmp_path)
    with pytest.raises(ValueError, match=r"params/conv1/w has shape \(256, 256\) in the checkpoint and shape "
                                         r"\(128, 256\) in this run"):
        ckpts.restore(other, train_iterator())
    ckpts.close()
    assert checkpoints.latest(tmp_path)[0] == 1  # not deleted


def test_metrics_survive_a_row_torn_by_a_kill(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "_tensorboard_writer", lambda workdir: None)  # jsonl only (no TF import)
    writer = metrics.Writer(tmp_path, enabled=True)
    writer.write(1, {"train_loss": 2.0})
    writer.write(2, {"train_loss": 1.5})
    writer.close()
    path = tmp_path / metrics.METRICS_FILE
    with open(path, "a") as f:
        f.write('{"step": 3, "train_lo')  # killed mid-write
    assert metrics.read(path) == {"train_loss": {1: 2.0, 2: 1.5}}
    writer = metrics.Writer(tmp_path, enabled=True)  # the resumed run
    writer.write(3, {"train_loss": 1.25})
    writer.close()
    assert metrics.read(path) == {"train_loss": {1: 2.0, 2: 1.5, 3: 1.25}}
    assert path.read_text().count("\n") == 3
