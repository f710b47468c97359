"""Figures of the invariance, occlusion and correspondence analyses (the paper's Fig. 5, Fig. 7). Takes arrays,
returns matplotlib figures; computes nothing itself (the shared helpers are `zfjax.viz`'s)."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from zfjax.viz import show, normalize_projection, pyplot

TRANSFORM_TITLES = {"translate": "vertical translation (pixels)", "scale": "scale (factor)",
                    "rotate": "rotation (degrees)"}


def invariance_figure(sweeps: Sequence, layer_titles: Mapping[str, str], names: Sequence[str],
                      examples: Mapping[str, tuple[Sequence[float], np.ndarray]]):
    """Fig. 5: per transform (columns) a strip of example transformed images, then the feature distance at each
    layer of `layer_titles` (layer name -> row title) and p(true class) against the transform's value, one line per
    image. `sweeps` are `zfjax.invariance.Sweep`s, `names` the legend (one per image), `examples[kind]` a
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
    maps: Any  # zfjax.occlusion.Maps
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



__all__ = ["invariance_figure", "OcclusionPanel", "occlusion_figure", "masks_figure"]
