"""Two processes (jax.distributed on 127.0.0.1, one CPU device each, one shared workdir) train to the parameters of
one process on the same global batch: each host feeds its half of every batch and the gradients are all-reduced."""
import subprocess
import sys

import jax
import numpy as np
import pytest

from zfjax.training import checkpoints, metrics, train

# 64 training images in global batches of 32: 2 steps, checkpointed and evaluated (64 test images) at the end.
OVERRIDES = {"train_subset": 64, "eval_subset": 64, "eval_batch_size": 32, "num_epochs": 1, "snapshot_epochs": (1,)}
TIMEOUT_S = 300  # a process whose peer died aborts (SIGABRT) or hangs in a collective: never wait forever


@pytest.fixture(scope="session")
def start_two_processes(repo_root, free_port, subprocess_env):
    """``start_two_processes(workdir, log_dir)``: train_imagenet as processes 0 and 1 of one job (logs in `log_dir`)."""
    def start(workdir, log_dir) -> list[subprocess.Popen]:
        port = free_port()
        flags = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in OVERRIDES.items()]
        procs = []
        for i in range(2):
            with open(log_dir / f"process_{i}.log", "wb") as log:  # a file, not a pipe: a full pipe would block
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "experiments.train_imagenet", "--config=experiments/configs/tiny.py",
                     f"--workdir={workdir}", *flags, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                     f"--process_id={i}"], cwd=repo_root, stdout=log, stderr=log,
                    env=subprocess_env(JAX_NUM_CPU_DEVICES="1")))
        return procs
    return start


@pytest.mark.slow
def test_two_processes_train_to_the_one_process_params(start_two_processes, tiny_config, tmp_path):
    procs = start_two_processes(tmp_path / "two", tmp_path)
    try:
        one = train.train_and_evaluate(tiny_config(**OVERRIDES), tmp_path / "one")  # meanwhile here, on 1 device
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], "\n".join((tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(2))
    assert jax.process_count() == 1 and int(one.step) == 2
    step, params = checkpoints.latest(tmp_path / "two")
    assert step == 2
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params,
                 jax.device_get(one.params))
    c = tiny_config(**OVERRIDES)
    arch = train.build_arch(c, train.load_data(c))
    init = train.create_state(arch, train.make_optimizer(c, 2), c.seed).params
    moved = min(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(init)))
    assert moved > 1e-4  # every layer trained, far beyond the tolerance
    a, b = metrics.read(tmp_path / "two" / "metrics.jsonl"), metrics.read(tmp_path / "one" / "metrics.jsonl")
    for name in ("train_loss", "eval_loss", "eval_top1"):
        np.testing.assert_allclose(a[name][2], b[name][2], rtol=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").glob(".lock.*")) == [".lock.0", ".lock.1"]
