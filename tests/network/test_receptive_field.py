"""zfjax.network.receptive_field against brute force: the input pixels a unit actually depends on."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from zfjax import deconv
from zfjax.network import layers, models
from zfjax.network.receptive_field import receptive_field


def dependence(arch: models.Arch, layer: str, positions: np.ndarray) -> np.ndarray:
    """(P, H, W) bool: pixels with a non-zero gradient for each unit, in a one-channel copy of `arch`'s geometry.

    All weights are 1, the input is all ones and max pools are replaced by sum pools of the same geometry, so every
    path from a pixel to the unit carries a positive gradient: the support is exactly the receptive field.
    """
    h, w, _ = arch.input_shape

    def net(x):
        for c in arch.convs:
            x = layers.conv(x, jnp.ones((c.kernel, c.kernel, 1, 1)), None, c.stride, c.padding)
            if layer == c.name:
                return x
            if c.pool:
                pads = [(0, max(0, (layers.pool_output_size(s, arch.pool_window, arch.pool_stride, arch.pool_ceil)
                                    - 1) * arch.pool_stride + arch.pool_window - s)) for s in x.shape[1:3]]
                x = lax.reduce_window(x, 0.0, lax.add, (1, arch.pool_window, arch.pool_window, 1),
                                      (1, arch.pool_stride, arch.pool_stride, 1), [(0, 0), *pads, (0, 0)])
                if layer == c.pool_name:
                    return x
        raise AssertionError(layer)

    out, pullback = jax.vjp(net, jnp.ones((1, h, w, 1)))
    seeds = jnp.zeros((len(positions), *out.shape)).at[jnp.arange(len(positions)), 0, positions[:, 0],
                                                      positions[:, 1], 0].set(1.0)
    grads = jax.vmap(lambda s: pullback(s)[0])(seeds)
    return np.asarray(grads[:, 0, :, :, 0] > 0)


ARCHS = [
    models.get("small"),
    models.get("zfnet", input_shape=(67, 67, 3), num_classes=10),  # odd size: partial ceil-mode windows
    models.get("alexnet", input_shape=(99, 99, 3), num_classes=10),
    models.get("alexnet_torchvision", input_shape=(99, 99, 3), num_classes=10),  # floor-mode pools
    models.get("zfnet", remove=("conv3", "conv4")),  # full size, an ablated net
]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.name}{a.input_shape[0]}-{len(a.convs)}convs")
def test_receptive_field_matches_brute_force(arch):
    shapes = arch.shapes()
    for layer in deconv.projectable_layers(arch):
        h, w = shapes[layer][:2]
        positions = np.array([[0, 0], [h - 1, w - 1], [h // 2, w // 3], [0, w - 1], [h - 1, 0]])
        for pos, support in zip(positions, dependence(arch, layer, positions)):
            y0, y1, x0, x1 = receptive_field(arch, layer, tuple(pos))
            want = np.zeros_like(support)
            want[y0:y1, x0:x1] = True
            np.testing.assert_array_equal(support, want, err_msg=f"{arch.name} {layer} {tuple(pos)}")


def test_receptive_field_sizes_and_errors():
    arch = models.get("zfnet")
    assert receptive_field(arch, "conv1", (0, 0)) == (0, 6, 0, 6)  # 7x7 filter, one pixel of padding
    assert receptive_field(arch, "conv1", (5, 9)) == (9, 16, 17, 24)
    y0, y1, x0, x1 = receptive_field(arch, "conv2", (6, 6))  # away from the border: the full window
    assert (y1 - y0, x1 - x0) == (7 + 2 * 2 + 4 * 2 * 2, 7 + 2 * 2 + 4 * 2 * 2)
    assert receptive_field(arch, "conv1", (0, 0), input_hw=(64, 64)) == (0, 6, 0, 6)
    with pytest.raises(ValueError, match="no receptive field for layer 'fc6'"):
        receptive_field(arch, "fc6", (0, 0))
    with pytest.raises(ValueError, match="outside the 13x13 map of conv5"):
        receptive_field(arch, "conv5", (13, 0))
