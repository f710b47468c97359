"""Importing zfjax selects the fast XLA:CPU convolution path (YNNPACK off) and makes glibc keep freed memory for
reuse, unless the user opts out."""
import json
import platform
import subprocess
import sys

import pytest

PROBE = ("import os, zfjax, jax.numpy as jnp; float(jnp.ones(3).sum()); "
         "print(os.environ.get('XLA_FLAGS', ''))")

# The median of the minor page faults per call of a program with an 84 MB output, over 25 calls (glibc unmaps
# buffers that large when they are freed, so each call faults all 20,600 of its pages in again unless freed memory
# is kept; with it kept, the heap grows during a few calls, then serves every call from pages it already has).
FAULTS = """
import json, resource, statistics, zfjax, jax, jax.numpy as jnp
x = jnp.ones((21_000_000,))
double = jax.jit(lambda x: x * 2)
faults = []
for _ in range(25):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    double(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(statistics.median(faults)))
"""


def _run(subprocess_env, code: str, **env) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(**env), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("env,expected", [
    ({"XLA_FLAGS": ""}, "--xla_cpu_experimental_ynn_fusion_type="),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
     "--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type="),
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"},
     "--xla_cpu_experimental_ynn_fusion_type=dot"),  # the user's own choice wins
    ({"XLA_FLAGS": "", "ZFJAX_KEEP_XLA_FLAGS": "1"}, ""),
])
def test_flag_set_before_backend_starts(subprocess_env, env, expected):
    import jaxlib
    if not jaxlib.__version__.startswith("0.10."):
        pytest.skip("the flag is only set on jaxlib 0.10.x")
    assert _run(subprocess_env, PROBE, **env) == expected


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc settings are glibc's")
def test_freed_memory_is_reused(subprocess_env):
    """With the settings a large buffer's pages are reused across calls; with the opt-out each call faults them in."""
    kept = json.loads(_run(subprocess_env, FAULTS))
    default = json.loads(_run(subprocess_env, FAULTS, ZFJAX_KEEP_MALLOC="1"))
    assert default > 15_000, default  # 84 MB in 4 KB pages: the cost the setting removes
    assert kept < 1_000, kept
