"""What the explorer page knows of each unit: its top activations (value, image, label, position, tile window) and
its statistics over the dataset, as JSON-ready records; numbers rounded to 6 significant digits.

A unit is *dead* when its strongest activation over the dataset is <= 0 (it never fires). Its class histogram
counts the labels of its top activations that are > 0 (the rest say nothing of what drives it), and its
*selectivity* is the share of the most frequent class among them (0 for a dead unit): 1 means every one of its
strongest images is of one class.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from zfjax.analyses.unit_scan import LayerStats


def number(v: Any) -> float:
    """A float rounded to 6 significant digits (what the page shows and the data files hold)."""
    return float(f"{float(v):.6g}")


def class_counts(values: np.ndarray, labels: np.ndarray) -> list[list[int]]:
    """[[label, count], ...] of one unit's top activations that are > 0 with a known label; most frequent first,
    ties to the smaller label."""
    keep = (np.asarray(values) > 0) & (np.asarray(labels) >= 0)
    found, counts = np.unique(np.asarray(labels)[keep], return_counts=True)
    order = np.lexsort((found, -counts))
    return [[int(found[i]), int(counts[i])] for i in order]


def selectivity(counts: list[list[int]]) -> float:
    """Share of the most frequent class among the counted activations (0 when there are none)."""
    total = sum(c for _, c in counts)
    return counts[0][1] / total if total else 0.0


def units(stats: LayerStats, windows: np.ndarray, k: int) -> list[dict]:
    """One record per unit (channel) of a layer; `windows` (C, >= k, 4) are the tiles (y0, y1, x0, x1) of its
    top activations, `k` how many of them the page shows (the histogram counts all of ``stats.top``)."""
    top = stats.top
    shown = min(k, top.values.shape[1])
    out = []
    for c in range(top.values.shape[0]):
        counts = class_counts(top.values[c], stats.labels[c])
        out.append({
            "unit": c,
            "max": number(top.values[c, 0]),
            "mean": number(stats.mean[c]),
            "fires": number(stats.fires[c]),
            "dead": bool(top.values[c, 0] <= 0),
            "selectivity": number(selectivity(counts)),
            "classes": counts,
            "top": [{"value": number(top.values[c, j]), "image": int(top.image[c, j]),
                     "label": int(stats.labels[c, j]), "h": int(top.h[c, j]), "w": int(top.w[c, j]),
                     "window": [int(v) for v in windows[c, j]]} for j in range(shown)],
        })
    return out


__all__ = ["number", "class_counts", "selectivity", "units"]
