"""Pictures of the analyses' outputs: matplotlib figures (Figs. 2, 4, 5, 6, 7, learning curves), mosaics of tiles
and their atomic saving. Takes arrays, returns arrays or matplotlib figures; computes nothing itself."""
from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from zfjax import files


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


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> pathlib.Path:
    """Atomically save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    return pathlib.Path(path)


TRANSFORM_TITLES = {"translate": "vertical translation (pixels)", "scale": "scale (factor)",
                    "rotate": "rotation (degrees)"}


def invariance_figure(sweeps: Sequence, layer_titles: Mapping[str, str], names: Sequence[str],
                      examples: Mapping[str, tuple[Sequence[float], np.ndarray]]):
    """Fig. 5: per transform (columns) a strip of example transformed images, then the feature distance at each
    layer of `layer_titles` (layer name -> row title) and p(true class) against the transform's value, one line per
    image. `sweeps` are `zfjax.analyses.invariance.Sweep`s, `names` the legend (one per image), `examples[kind]` a
    (values, images in [0, 1]) pair of a few transformed versions of the first image.
    """
    plt = pyplot()
    rows = len(layer_titles) + 1
    fig = plt.figure(figsize=(4.4 * len(sweeps), 1.3 + 2.7 * rows))
    outer = fig.add_gridspec(rows + 1, len(sweeps), height_ratios=[0.6] + [1] * rows, hspace=0.5, wspace=0.28)
    for col, sw in enumerate(sweeps):
        values, images = examples[sw.kind]
        strip = outer[0, col].subgridspec(1, len(values), wspace=0.06)
        for k, (v, im) in enumerate(zip(values, images)):
            show(fig.add_subplot(strip[0, k]), im, f"{v:g}")
        series = [(sw.distance[name], title) for name, title in layer_titles.items()]
        series.append((sw.prob_true, "p(true class)"))
        for row, (y, title) in enumerate(series, start=1):
            ax = fig.add_subplot(outer[row, col])
            for n, line in enumerate(y):
                ax.plot(sw.values, line, marker=".", ms=3, lw=1, label=names[n])
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            if row == rows:
                ax.set_xlabel(TRANSFORM_TITLES[sw.kind])
                ax.set_ylim(-0.03, 1.03)
            if col == 0:
                ax.set_ylabel("Euclidean distance" if row < rows else "probability")
    fig.axes[-1].legend(fontsize=7, loc="best")
    return fig




class OcclusionPanel(NamedTuple):
    """What Fig. 7 shows for one image (all in display form except the raw projections)."""
    occluded: np.ndarray  # (H, W, C) in [0, 1]: the image with the square where p(true class) is lowest
    corner: tuple[int, int]  # that square's top-left corner
    label: int  # the true class
    maps: Any  # zfjax.analyses.occlusion.Maps
    activation: np.ndarray  # (h, w): the chosen map of the layer for the unoccluded image
    projections: np.ndarray  # (K, H, W, C) raw deconv projections of that map
    corners: Sequence[tuple[int, int] | None]  # the square's top-left corner for each projection (None: unoccluded)


def _box(ax, corner: tuple[int, int], patch: int, color: str = "red") -> None:
    """Outline the occluder with top-left `corner` (row, col), in image pixel coordinates."""
    from matplotlib.patches import Rectangle
    y, x = corner
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), patch, patch, fill=False, ec=color, lw=1.2))


def _map(ax, values: np.ndarray, extent: tuple[float, ...], title: str, **kw):
    """An occlusion map drawn over image coordinates: cell [i, j] centred on the square's centre at that corner."""
    im = ax.imshow(values, extent=extent, origin="upper", interpolation="nearest", **kw)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def occlusion_figure(panels: Sequence[OcclusionPanel], class_names: Sequence[str], *, patch: int, stride: int,
                     layer: str):
    """Fig. 7, one row per image: (a) the image with the grey square, (b) the layer's strongest map (unoccluded),
    (c) its total activation against the square's position, (d) its projections with the square at a few
    positions, (e) p(true class) and (f) the most probable class against the square's position (legend: names)."""
    plt = pyplot()
    import matplotlib.patches as mpatches
    from matplotlib.colors import ListedColormap
    fig = plt.figure(figsize=(19, 3.3 * len(panels)))
    grid = fig.add_gridspec(len(panels), 6, width_ratios=[1, 1, 1.2, 1.1, 1.2, 1.6], wspace=0.25, hspace=0.3)
    palette = plt.get_cmap("tab20").colors
    for r, p in enumerate(panels):
        rows, cols = p.maps.prob_true.shape
        half = patch / 2
        extent = (half - stride / 2 - 0.5, (cols - 1) * stride + half + stride / 2 - 0.5,
                  (rows - 1) * stride + half + stride / 2 - 0.5, half - stride / 2 - 0.5)
        ax = fig.add_subplot(grid[r, 0])
        show(ax, p.occluded, f"(a) {class_names[p.label]}, grey square")
        _box(ax, p.corner, patch)
        ax = fig.add_subplot(grid[r, 1])
        ax.imshow(p.activation, cmap="viridis", interpolation="nearest")
        ax.set_title(f"(b) {layer} map {p.maps.channel}", fontsize=9)
        ax.set_axis_off()
        ax = fig.add_subplot(grid[r, 2])
        fig.colorbar(_map(ax, p.maps.feature, extent, f"(c) total activation of map {p.maps.channel}",
                          cmap="viridis"), ax=ax, fraction=0.046)
        sub = grid[r, 3].subgridspec(2, int(np.ceil(len(p.projections) / 2)), wspace=0.05, hspace=0.15)
        for k, (proj, at) in enumerate(zip(normalize_projection(p.projections), p.corners)):
            ax = fig.add_subplot(sub[k // sub.ncols, k % sub.ncols])
            show(ax, proj, "" if at is not None else "no square")
            if at is not None:
                _box(ax, at, patch, "black")
            if k == 0:
                ax.set_title("(d) projections of map", fontsize=9)
        ax = fig.add_subplot(grid[r, 4])
        fig.colorbar(_map(ax, p.maps.prob_true, extent, f"(e) p({class_names[p.label]})", cmap="jet", vmin=0, vmax=1),
                     ax=ax, fraction=0.046)
        present = np.unique(p.maps.top_label)
        index = np.searchsorted(present, p.maps.top_label)
        ax = fig.add_subplot(grid[r, 5])
        _map(ax, index, extent, "(f) most probable class", cmap=ListedColormap([palette[c % 20] for c in present]),
             vmin=-0.5, vmax=len(present) - 0.5)
        ax.legend(handles=[mpatches.Patch(color=palette[c % 20], label=class_names[c] + (" (true)" if c == p.label
                                                                                          else "")) for c in present],
                  fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def masks_figure(masked: Mapping[str, np.ndarray], names: Sequence[str]):
    """Rows: parts (name -> (N, H, W, C) masked images in [0, 1]); columns: the images (`names`)."""
    plt = pyplot()
    n = len(names)
    fig, axes = plt.subplots(len(masked), n, figsize=(1.6 * n + 1.2, 1.7 * len(masked)), squeeze=False)
    for r, (part, images) in enumerate(masked.items()):
        for c, image in enumerate(images):
            show(axes[r, c], image, names[c] if r == 0 else "")
        axes[r, 0].text(-0.1, 0.5, part, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig



__all__ = ["normalize_projection", "mosaic", "block_mosaic", "top9_figure", "filter_grid", "evolution_figure",
           "spectrum_figure", "pyplot", "show", "accuracy_curves", "grouped_bars", "save_figure",
           "invariance_figure", "OcclusionPanel", "occlusion_figure", "masks_figure"]
