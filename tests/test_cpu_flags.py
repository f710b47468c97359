"""Importing zfjax selects the fast XLA:CPU convolution path (YNNPACK off) unless the user opts out."""
import subprocess
import sys

import pytest

PROBE = ("import os, zfjax, jax.numpy as jnp; float(jnp.ones(3).sum()); "
         "print(os.environ.get('XLA_FLAGS', ''))")


def _flags_after_import(subprocess_env, **env) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], env=subprocess_env(**env), capture_output=True, text=True,
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
    assert _flags_after_import(subprocess_env, **env) == expected
