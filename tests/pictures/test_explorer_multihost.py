"""Two processes (jax.distributed on 127.0.0.1, one CPU device each, one shared workdir) build the explorer one
process builds: each scans its half of the images and renders its share of the sprite sheets; the merged top-k,
statistics, data files and sheets equal the one-process run's."""
import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import explore
from experiments.configs import explore as explore_config
from zfjax.pictures import sprites

LAYERS = ("conv1", "conv3")
TIMEOUT_S = 300  # a process whose peer died aborts or hangs in a collective: never wait forever


def _assert_same(a, b, where="data"):
    """Equal JSON values; floats to the 6 digits the data files keep."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=2e-6, abs=1e-9), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_two_processes_give_the_explorer_of_one(repo_root, explorer_site, free_port, subprocess_env, tmp_path):
    port = free_port()
    overrides = ["--config.random_init=True", f"--config.layers=({', '.join(repr(x) for x in LAYERS)},)"]
    procs = []
    for i in range(2):
        with open(tmp_path / f"process_{i}.log", "wb") as log:  # a file, not a pipe: a full pipe would block
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "experiments.explore", "--config=experiments/configs/explore.py:tiny",
                 *overrides, f"--workdir={tmp_path / 'two'}", f"--coordinator_address=127.0.0.1:{port}",
                 "--num_processes=2", f"--process_id={i}", "--verbose"], cwd=repo_root, stdout=log, stderr=log,
                env=subprocess_env(JAX_NUM_CPU_DEVICES="1")))
    try:
        config = explore_config.get_config("tiny")
        config.random_init, config.layers = True, LAYERS
        explore.run(config, tmp_path / "one")  # meanwhile here, in one process
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = [(tmp_path / f"process_{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    for i in range(2):  # each process scanned its half and rendered its share
        assert f"process {i} scanned 20 of the 40 images" in logs[i] and f"process {i} renders 1 of the 2" in logs[i]
    one, two = explorer_site(tmp_path / "one"), explorer_site(tmp_path / "two")
    _assert_same(one[1], two[1], "site")
    assert list(one[2]) == list(LAYERS)
    for layer in LAYERS:
        _assert_same(one[2][layer], two[2][layer], layer)
        for sheet in one[2][layer]["sheets"] + [one[2][layer]["overview"]]:
            a, b = sprites.load(one[0] / sheet["file"]), sprites.load(two[0] / sheet["file"])
            assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1, sheet["file"]
    assert json.loads((tmp_path / "two" / "results.json").read_text())["images"] == 40
