"""Correspondence (Table 1): Delta on constructed sign patterns with known answers, a brute-force loop, masking."""
import itertools

import jax
import numpy as np
import pytest

from zfjax.analyses import correspondence
from zfjax.network import models

ARCH = models.get("small", conv3={"features": 8}, conv4={"features": 8}, conv5={"features": 8},
                  fc6={"features": 16}, fc7={"features": 16})
PARAMS = models.init(ARCH, jax.random.key(1))
forward = jax.jit(lambda x: models.apply(ARCH, PARAMS, x).acts)


def brute_delta(signs: np.ndarray) -> float:
    """The docstring's formula as a plain loop: mean over ordered pairs i != j of the differing fraction."""
    n, d = signs.shape
    total = sum(sum(signs[i, k] != signs[j, k] for k in range(d)) / d
                for i, j in itertools.permutations(range(n), 2))
    return total / (n * (n - 1))


def test_known_values():
    s = np.array([[1, -1, 0, 1]] * 4, np.int8)
    assert correspondence.delta(s) == 0.0  # identical changes: perfect correspondence
    flipped = np.array([[1, -1, 0, 1], [-1, 1, 0, -1]], np.int8)
    assert correspondence.delta(flipped) == pytest.approx(0.75)  # 3 of 4 signs differ (0 stays 0)
    # 3 images, the third flipped: unordered pairs (0,1), (0,2), (1,2) differ by 0, 1, 1 -> Delta 2/3
    three = np.array([[1, 1], [1, 1], [-1, -1]], np.int8)
    assert correspondence.delta(three) == pytest.approx(2 / 3)


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    for n, d in ((2, 7), (5, 40), (6, 13)):
        s = rng.integers(-1, 2, size=(n, d)).astype(np.int8)
        assert correspondence.delta(s) == pytest.approx(brute_delta(s), abs=1e-6)
        h = correspondence.hamming(s)
        assert np.allclose(h, h.T) and np.all(np.diag(h) == 0)
    reps = [rng.integers(-1, 2, size=(5, 30)).astype(np.int8) for _ in range(4)]
    sc = correspondence.score(reps)
    assert sc.delta == pytest.approx(np.mean([brute_delta(r) for r in reps]), abs=1e-6)
    assert sc.std_repeats == pytest.approx(np.std([brute_delta(r) for r in reps]), abs=1e-6)


def test_sign_changes_against_forward():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 28, 28, 1)).astype(np.float32)
    boxes = np.array([[2, 3, 5, 5], [10, 10, 4, 6], [20, 0, 8, 8]])
    masked = x.copy()
    for im, (t, l, h, w) in zip(masked, boxes):
        im[t:t + h, l:l + w] = 0.5
    np.testing.assert_array_equal(correspondence.mask(x, boxes, 0.5), masked)
    signs = correspondence.sign_changes(ARCH, PARAMS, x, boxes, ["conv1", "fc7"], fill=0.5, rtol=0.0)
    a, b = forward(x), forward(masked)
    for name in ("conv1", "fc7"):
        eps = np.asarray(a[name] - b[name]).reshape(3, -1)
        np.testing.assert_array_equal(signs[name], np.sign(eps))
    # conv1 (5x5, pad 2) units farther than 2 pixels from the box see identical inputs: no change
    conv1 = signs["conv1"].reshape(3, 28, 28, -1)
    assert not conv1[0, 10:].any() and conv1[0, 2:7, 3:8].any()
    # the same image and box twice: identical changes, Delta 0
    same = correspondence.sign_changes(ARCH, PARAMS, np.repeat(x[:1], 3, 0), np.repeat(boxes[:1], 3, 0), ["fc7"])
    assert correspondence.delta(same["fc7"]) == 0.0


def test_random_boxes_and_bad_input():
    boxes = correspondence.random_boxes(np.random.default_rng(0), 50, (6, 4), (2, 3, 10, 12))
    top, left, h, w = boxes.T
    assert (h == 6).all() and (w == 4).all() and top.min() >= 2 and left.min() >= 3
    assert (top + 6).max() <= 12 and (left + 4).max() <= 15
    with pytest.raises(ValueError, match="inside"):
        correspondence.mask(np.zeros((1, 8, 8, 1)), [[5, 5, 4, 4]])
    with pytest.raises(ValueError, match="does not fit"):
        correspondence.random_boxes(np.random.default_rng(0), 1, (9, 2), (0, 0, 8, 8))
    with pytest.raises(ValueError, match="N >= 2"):
        correspondence.delta(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="not in"):
        correspondence.sign_changes(ARCH, PARAMS, np.zeros((2, 28, 28, 1)), [[0, 0, 2, 2]] * 2, ["fc9"])
