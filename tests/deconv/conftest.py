"""Fixtures of the deconv tests: full float32 precision, and parameters with non-zero biases."""
import jax
import pytest

from zfjax.network import models


@pytest.fixture(autouse=True, scope="module")
def float32_convolutions():
    """GPUs run float32 convolutions in TF32 by default (3e-4 relative error against Captum, seen on an H200);
    every comparison here is at float32 rounding, so ask for full precision (no effect on CPU)."""
    with jax.default_matmul_precision("highest"):
        yield


def _with_random_biases(params: models.Params, key, scale: float = 0.05) -> models.Params:
    """Non-zero biases: they shape the forward pass but must not enter the backward one."""
    keys = jax.random.split(key, len(params))
    return {n: {"w": p["w"], "b": scale * jax.random.normal(k, p["b"].shape)}
            for k, (n, p) in zip(keys, params.items())}


@pytest.fixture(scope="session")
def random_biases():
    """``random_biases(params, key, scale=0.05)``: `params` with non-zero biases (they shape the forward pass but
    must not enter the backward one)."""
    return _with_random_biases
