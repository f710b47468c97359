"""Test set-up: the persistent XLA compilation cache (compile time dominates this suite) and the shared fixtures.

Tests mirror the package (``tests/deconv/test_transform.py`` tests ``zfjax/deconv/transform.py``); helpers that
several test files need are fixtures here, never imports of another test file.
"""
import os
import pathlib
import socket

import jax
import numpy as np
import pytest

from zfjax import compile_cache, deconv

ROOT = pathlib.Path(__file__).resolve().parent.parent
compile_cache.use(ROOT / ".jax_cache")


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    """The repository's root (the working directory of the command-line tests)."""
    return ROOT


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(compile_cache.environment(ROOT / ".jax_cache"))
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def subprocess_env():
    """``subprocess_env(**extra)``: the environment of a test's child Python process (repo on the path, the same
    compile cache, `extra` on top)."""
    return _subprocess_env


_PROJECT_JIT = jax.jit(deconv.project, static_argnames=("arch", "layer", "rule", "lcn_rule", "crop"))


@pytest.fixture(scope="session")
def project_jit():
    """`deconv.project` compiled whole (one program per layer and rule instead of each operation's own), shared by
    the files that check projections; `tests/deconv/test_builtin.py` checks that it equals the eager call."""
    return _PROJECT_JIT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on (for a local jax.distributed coordinator)."""
    return _free_port


def _reference_tile(full: np.ndarray, tile, fill: float = 0.0) -> np.ndarray:
    y0, y1, x0, x1 = tile
    out = np.full((y1 - y0, x1 - x0, full.shape[-1]), fill, full.dtype)
    for i, y in enumerate(range(y0, y1)):
        for j, xx in enumerate(range(x0, x1)):
            if 0 <= y < full.shape[0] and 0 <= xx < full.shape[1]:
                out[i, j] = full[y, xx]
    return out


@pytest.fixture(scope="session")
def reference_tile():
    """``reference_tile(full, (y0, y1, x0, x1), fill=0)``: image `full` (H, W, C) cut to the tile pixel by pixel,
    `fill` outside the image."""
    return _reference_tile


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**overrides)``: the tiny training config (experiments/configs/tiny.py) with `overrides`."""
    from experiments.configs import tiny

    def make(**overrides):
        c = tiny.get_config()
        c.update(overrides)
        return c
    return make


@pytest.fixture(scope="session")
def train_iterator():
    """``train_iterator()``: a fresh, checkpointable grain iterator over 20 one-number examples (batch 4)."""
    from zfjax.data import pipeline

    def make():
        source = pipeline.ArraySource("ids", np.arange(20)[:, None], np.arange(20))
        return pipeline.train_iterator(source, lambda ex, rng: ex, global_batch=4, seed=0, num_threads=1)
    return make
