"""The frequency content of first-layer filters (the paper's Fig. 6: 11x11/4 filters mix very high and very low
frequencies with few in between)."""
from __future__ import annotations

import numpy as np


def radial_spectrum(filters: np.ndarray, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, power): each filter (HWIO, I summed) zero-padded to `size`, its 2-D power spectrum averaged
    over rings of equal radial frequency (cycles/pixel, 0 to 0.5 * sqrt(2) in the corners); power is (O, bins),
    normalized to sum 1 per filter."""
    f = np.asarray(filters, np.float64)
    if f.ndim != 4 or f.shape[0] > size or f.shape[1] > size:
        raise ValueError(f"filters must be HWIO no larger than size={size}, got shape {f.shape}")
    f = f - f.mean(axis=(0, 1), keepdims=True)  # the DC term says nothing about the filter's pattern
    power = (np.abs(np.fft.fft2(f, s=(size, size), axes=(0, 1))) ** 2).sum(2)  # (size, size, O)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    ring = np.rint(np.hypot(fy, fx) * size).astype(int)
    bins = int(ring.max()) + 1
    sums = np.stack([np.bincount(ring.ravel(), power[..., o].ravel(), bins) for o in range(f.shape[3])])
    radial = sums / np.bincount(ring.ravel(), minlength=bins)
    total = radial.sum(1, keepdims=True)
    return np.arange(bins) / size, radial / np.where(total > 0, total, 1.0)


def mean_frequency(filters: np.ndarray, size: int = 32) -> np.ndarray:
    """(O,) each filter's power-weighted mean radial frequency (cycles/pixel): low = smooth, high = fine detail."""
    freqs, power = radial_spectrum(filters, size)
    return power @ freqs


__all__ = ["radial_spectrum", "mean_frequency"]
