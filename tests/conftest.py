"""Test set-up: persistent XLA compilation cache (compile time dominates this suite) and shared fixtures."""
import os
import pathlib
import socket

import jax
import numpy as np
import pytest

_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return ROOT


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a test's child Python process: repo on the path, the same compile cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_COMPILATION_CACHE_DIR"] = str(_CACHE)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a local jax.distributed coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_tile(full: np.ndarray, tile, fill: float = 0.0) -> np.ndarray:
    """Pixel by pixel: image `full` (H, W, C) cut to tile (y0, y1, x0, x1); `fill` outside the image."""
    y0, y1, x0, x1 = tile
    out = np.full((y1 - y0, x1 - x0, full.shape[-1]), fill, full.dtype)
    for i, y in enumerate(range(y0, y1)):
        for j, xx in enumerate(range(x0, x1)):
            if 0 <= y < full.shape[0] and 0 <= xx < full.shape[1]:
                out[i, j] = full[y, xx]
    return out
