"""JAX's persistent compilation cache, keeping every compiled program however fast it compiled.

Compilation dominates short runs (tests, benchmarks' cold starts); `use` turns the cache on in this process and
`environment` gives the variables that turn it on in a child process.
"""
from __future__ import annotations

import pathlib

import jax


def use(path: str | pathlib.Path) -> None:
    """Cache every compiled program of this process in the folder `path`."""
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def environment(path: str | pathlib.Path) -> dict[str, str]:
    """Environment variables that make a child Python process use the same cache."""
    return {"JAX_COMPILATION_CACHE_DIR": str(path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


__all__ = ["use", "environment"]
