"""Process-wide CPU settings that zfjax applies when it is imported, before the XLA:CPU backend starts.

Both act only if zfjax is imported before the first JAX computation (XLA reads its flags, and its threads take
their malloc arenas, when the CPU backend starts), and each has an opt-out environment variable. GPU/TPU code is
unaffected by either.

- **YNNPACK off** (jaxlib 0.10.x): ``--xla_cpu_experimental_ynn_fusion_type=`` is appended to ``XLA_FLAGS``: that
  path is 1.5-3x slower on these layers (results agree to float rounding). Skipped when ``XLA_FLAGS`` already names
  the option or ``ZFJAX_KEEP_XLA_FLAGS=1``.
- **Freed memory kept for reuse** (glibc): XLA:CPU allocates a program's buffers on every call, and glibc serves a
  request of more than 32 MB (64 MB in a thread's own arena) with a fresh ``mmap`` that it unmaps on ``free``, so
  every call faults each page in again: a matmul with an 84 MB output took 38 ms, 20 of them in 20,600 page faults.
  One malloc arena, no ``mmap`` and no trimming (``mallopt``) make the heap keep its peak size and hand the same
  pages back (32 conv5 projections 139 -> 118 ms). The cost: the process keeps its peak memory until it exits,
  as accelerator allocators do. ``ZFJAX_KEEP_MALLOC=1`` leaves glibc's defaults.
"""
from __future__ import annotations

import ctypes
import os
import platform

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's mallopt parameters (malloc.h)


def fast_xla_flags() -> None:
    """Append the YNNPACK opt-out to XLA_FLAGS on jaxlib 0.10.x (where the flag exists and is measured slower)."""
    if os.environ.get("ZFJAX_KEEP_XLA_FLAGS") == "1":
        return
    try:
        from importlib.metadata import version
        jaxlib_version = version("jaxlib")
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave flags alone
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if jaxlib_version.startswith("0.10.") and "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + YNN_FLAG).strip()


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (one arena, no mmap, no trim); True if it was applied."""
    if os.environ.get("ZFJAX_KEEP_MALLOC") == "1" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))


def apply() -> None:
    """Both settings; `zfjax/__init__.py` calls this first."""
    fast_xla_flags()
    reuse_freed_memory()
