"""Invariance (Fig. 5): transforms against scipy.ndimage's affine resampling, sweeps against a per-image loop."""
import jax
import numpy as np
import pytest
import scipy.ndimage as ndi

from zfjax.analyses import invariance
from zfjax.network import models

ARCH = models.get("small", conv3={"features": 8}, conv4={"features": 8}, conv5={"features": 8},
                  fc6={"features": 16}, fc7={"features": 16})
PARAMS = models.init(ARCH, jax.random.key(0))
RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(3, 28, 28, 1)).astype(np.float32)
forward = jax.jit(lambda x: models.apply(ARCH, PARAMS, x))  # the reference runs the plain forward pass per value


def scipy_reference(x: np.ndarray, kind: str, value: float, fill: float) -> np.ndarray:
    """The same transform with scipy: output pixel o reads input at A @ (o - c) + c - shift; beyond the edge pixels
    the image is blended with `fill` (scipy's grid-constant mode, as jax's map_coordinates does)."""
    h, w = x.shape[1:3]
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    if kind == "translate":
        a, shift = np.eye(2), np.array([value, 0.0])
    elif kind == "scale":
        a, shift = np.eye(2) / value, np.zeros(2)
    else:
        t = np.deg2rad(value)
        a, shift = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]), np.zeros(2)
    offset = c - a @ c - shift
    return np.stack([np.stack([ndi.affine_transform(im[..., ch], a, offset, order=1, mode="grid-constant", cval=fill)
                               for ch in range(x.shape[3])], -1) for im in x])


@pytest.mark.parametrize("kind,value", [("translate", 3), ("translate", -2.5), ("scale", 1.4), ("rotate", 30),
                                        ("rotate", -75)])
def test_transform_matches_scipy(kind, value):
    x = RNG.normal(size=(2, 11, 12, 2)).astype(np.float32)
    np.testing.assert_allclose(invariance.transform(x, kind, value, fill=0.3),
                               scipy_reference(x, kind, value, 0.3), atol=1e-5)


def test_exact_cases():
    x = RNG.normal(size=(2, 9, 9, 3)).astype(np.float32)
    shifted = np.full_like(x, -1.0)
    shifted[:, 2:] = x[:, :-2]
    np.testing.assert_array_equal(invariance.transform(x, "translate", 2, fill=-1.0), shifted)
    # counter-clockwise on screen is numpy's rot90 in the (row, col) plane
    np.testing.assert_allclose(invariance.transform(x, "rotate", 90), np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
    for kind, identity in (("translate", 0), ("scale", 1), ("rotate", 0)):
        np.testing.assert_array_equal(invariance.transform(x, kind, identity), x)


def test_sweep_matches_loop():
    labels = np.array([0, 3, 7])
    values = [-3, 0, 2]
    layers = [ARCH.paper_layer(1), ARCH.paper_layer(7)]
    assert layers == ["pool1", "fc7"]
    sw = invariance.sweep(ARCH, PARAMS, IMAGES, labels, "translate", values, layers=layers, batch_size=2)
    base = forward(IMAGES)
    for v_idx, v in enumerate(values):
        moved = np.full_like(IMAGES, 0.0)
        if v >= 0:
            moved[:, v:] = IMAGES[:, :28 - v]
        else:
            moved[:, :v] = IMAGES[:, -v:]
        out = forward(moved)
        for name in layers:
            want = np.linalg.norm(np.asarray(out.acts[name] - base.acts[name]).reshape(3, -1), axis=1)
            np.testing.assert_allclose(sw.distance[name][:, v_idx], want, rtol=1e-4, atol=1e-5)
        probs = np.asarray(jax.nn.softmax(out.logits))
        np.testing.assert_allclose(sw.prob_true[:, v_idx], probs[np.arange(3), labels], rtol=1e-4, atol=1e-6)
    assert np.all(sw.distance["fc7"][:, 1] == 0)  # value 0 is the identity


def test_bad_input():
    with pytest.raises(ValueError, match="unknown transform"):
        invariance.transform(IMAGES, "shear", 1.0)
    with pytest.raises(ValueError, match="labels"):
        invariance.sweep(ARCH, PARAMS, IMAGES, [0, 1, 10], "scale", [1.0], layers=["fc7"])
    with pytest.raises(ValueError, match="positive"):
        invariance.sweep(ARCH, PARAMS, IMAGES, [0, 1, 2], "scale", [0.0, 1.0], layers=["fc7"])
    with pytest.raises(ValueError, match="not in"):
        invariance.sweep(ARCH, PARAMS, IMAGES, [0, 1, 2], "scale", [1.0], layers=["conv9"])
    with pytest.raises(ValueError, match="layers 1..7"):
        ARCH.paper_layer(8)
