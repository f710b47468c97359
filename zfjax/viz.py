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


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (figures are saved, never shown)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def mosaic(tiles, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tiles (R, C, h, w, ch) laid out as one (R*h + (R-1)*gap, C*w + (C-1)*gap, ch) image, `fill` between them."""
    tiles = np.asarray(tiles, np.float32)
    if tiles.ndim != 5:
        raise ValueError(f"tiles must be (rows, cols, h, w, channels), got shape {tiles.shape}")
    r, c, h, w, ch = tiles.shape
    out = np.full((r * (h + gap) - gap, c * (w + gap) - gap, ch), fill, np.float32)
    for i in range(r):
        for j in range(c):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tiles[i, j]
    return out


def block_mosaic(blocks, per_row: int, gap: int = 1, block_gap: int = 4, fill: float = 1.0) -> np.ndarray:
    """Blocks (M, k, h, w, ch), each of k <= 9 tiles as a 3x3 square (the paper's top 9), `per_row` blocks a row."""
    blocks = np.asarray(blocks, np.float32)
    m, k, h, w, ch = blocks.shape
    side = int(np.ceil(np.sqrt(k)))
    squares = np.full((m, side * side, h, w, ch), fill, np.float32)
    squares[:, :k] = blocks
    squares = np.stack([mosaic(s.reshape(side, side, h, w, ch), gap, fill) for s in squares])
    rows = int(np.ceil(m / per_row))
    grid = np.full((rows * per_row, *squares.shape[1:]), fill, np.float32)
    grid[:m] = squares
    return mosaic(grid.reshape(rows, per_row, *squares.shape[1:]), block_gap, fill)


def show(ax, image: np.ndarray, title: str = "") -> None:
    """An image in [0, 1] (grey when it has one channel), pixels unsmoothed, no axes."""
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def top9_figure(projections, patches, title: str, per_row: int = 4):
    """Fig. 2 for one layer: left, each map's top-9 projections as a 3x3 block; right, the image patches in the
    same places. `projections` (maps, k, S, S, C) raw (each normalized here); `patches` the same shape in [0, 1]."""
    plt = pyplot()
    left = block_mosaic(normalize_projection(projections), per_row)
    right = block_mosaic(patches, per_row)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6 * left.shape[0] / left.shape[1] + 0.6))
    show(axes[0], left, "projections (deconvnet)")
    show(axes[1], right, "image patches (receptive fields)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def filter_grid(w, title: str):
    """First-layer filters (HWIO, 1 or 3 input channels) as a grid, each contrast-stretched on its own."""
    plt = pyplot()
    w = np.asarray(w, np.float32)
    n = w.shape[-1]
    lo, hi = w.min(axis=(0, 1, 2), keepdims=True), w.max(axis=(0, 1, 2), keepdims=True)
    tiles = np.moveaxis((w - lo) / np.maximum(hi - lo, 1e-12), -1, 0)  # (n, h, w, c)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.ones((rows * cols, *tiles.shape[1:]), np.float32)
    grid[:n] = tiles
    image = mosaic(grid.reshape(rows, cols, *tiles.shape[1:]))
    scale = 6.0 / max(image.shape[:2])  # inches per pixel: the grid is at most 6 inches across
    fig, ax = plt.subplots(figsize=(scale * image.shape[1] + 0.4, scale * image.shape[0] + 0.6))
    show(ax, image, title)
    return fig


def evolution_figure(columns: dict, epochs, title: str):
    """Fig. 4: per layer a panel, one row per feature map, one column per epoch; `columns` maps a layer name to its
    raw projections (maps, epochs, S, S, C), each normalized here. An all-zero projection (the map fired on no
    image at that epoch) would be a flat grey tile: it is crossed out in red, so it is not read as a pattern."""
    plt = pyplot()
    rows = max(t.shape[0] for t in columns.values())
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.2 * rows / len(epochs) + 1.2),
                             squeeze=False)
    for ax, (layer, tiles) in zip(axes[0], columns.items()):
        show(ax, mosaic(normalize_projection(tiles)), layer)
        ax.set_autoscale_on(False)
        size = tiles.shape[2] + 1  # a tile and the gap after it
        for i, j in zip(*np.nonzero(~np.asarray(tiles).any(axis=(2, 3, 4)))):
            x0, y0, x1, y1 = j * size - 0.5, i * size - 0.5, (j + 1) * size - 1.5, (i + 1) * size - 1.5
            ax.plot([x0, x1], [y0, y1], [x0, x1], [y1, y0], color="red", lw=1)
        ax.set_axis_on()
        ax.set_xticks([(j + 0.5) * (tiles.shape[3] + 1) - 1 for j in range(len(epochs))], [str(e) for e in epochs],
                      fontsize=7)
        ax.set_yticks([])
        ax.set_xlabel("epoch", fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def spectrum_figure(freqs, spectra: dict, mean_freqs: dict, title: str):
    """Fig. 6's frequency argument: left, the first-layer filters' radially averaged power spectrum (mean over
    filters, each normalized to sum 1) per net; right, the histogram of each filter's mean frequency."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, power in spectra.items():
        left.plot(freqs, np.asarray(power).mean(0), marker="o", ms=3, label=name)
    left.set(xlabel="radial frequency (cycles/pixel)", ylabel="share of filter power", title="power spectrum")
    left.legend(fontsize=8)
    bins = np.linspace(0, np.max(freqs), 21)
    for name, f in mean_freqs.items():
        right.hist(f, bins=bins, alpha=0.5, label=name)
    right.set(xlabel="mean frequency of a filter (cycles/pixel)", ylabel="filters", title="per filter")
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["normalize_projection", "mosaic", "block_mosaic", "top9_figure", "filter_grid", "evolution_figure",
           "spectrum_figure"]


def accuracy_curves(x, series, *, xlabel: str, title: str, xticklabels=None, ylabel: str = "test accuracy (%)"):
    """One error-bar line per named series of fractions shaped (len(x), splits): mean ± std in percent."""
    fig, ax = pyplot().subplots(figsize=(5.5, 3.5))
    for label, values in series.items():
        a = 100 * np.asarray(values, np.float64)
        ax.errorbar(x, a.mean(1), yerr=a.std(1), marker="o", capsize=3, label=label)
    if xticklabels is not None:
        ax.set_xticks(x, xticklabels)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def grouped_bars(names, series, *, ylabel: str, rotation: int = 30):
    """Bars of several named series side by side for each of `names` (values already in display units)."""
    fig, ax = pyplot().subplots(figsize=(max(5.0, 0.45 * len(names) * len(series) + 2), 3.5))
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, names, rotation=rotation, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig
