"""Pictures of the analyses' outputs. Takes arrays, returns arrays or matplotlib figures; computes nothing itself."""
from __future__ import annotations

import numpy as np


def normalize_projection(p) -> np.ndarray:
    """Contrast-stretch each projection around 0 into [0, 1] for display: 0 -> 0.5, the largest |value| -> 0 or 1.

    `p` is one (H, W, C) projection or a stack (..., H, W, C); each one is scaled on its own, as in the paper's
    figures. An all-zero projection (a unit that did not fire) becomes uniform grey 0.5.
    """
    p = np.asarray(p, dtype=np.float32)
    if p.ndim < 3:
        raise ValueError(f"a projection is (H, W, C) or a stack (..., H, W, C); got shape {p.shape}")
    peak = np.abs(p).max(axis=(-3, -2, -1), keepdims=True)
    return 0.5 + 0.5 * p / np.where(peak > 0, peak, 1.0)


__all__ = ["normalize_projection"]
