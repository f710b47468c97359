"""Fig. 7 (occlusion sensitivity): a grey square slides over each image; maps of the strongest layer-5 feature
map's total activation, its projections for a few square positions, p(true class) and the most probable class.

    python -m experiments.occlusion --config=experiments/configs/occlusion.py --workdir=runs/occlusion

The maps come from `zfjax.analyses.occlusion.occlusion_maps` (a built-in net's incremental receptive-field-cone path; brute
force for a user's model, ``--config.model=...``), the projections from `zfjax.tiles.project_units`. Writes ``occlusion.png``, ``results.json`` (the maps) and ``index.html``.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import pathlib
from typing import Any

import numpy as np

from experiments import images as images_lib
from experiments import subject as subject_lib
from experiments.subject import Subject
from zfjax import files
from zfjax.analyses import correspondence, occlusion
from zfjax.pictures import pages, plots, tiles


def corners(maps: occlusion.Maps, stride: int, k: int) -> list[tuple[int, int]]:
    """`k` square positions (top-left corners) worth projecting: where the map's total activation drops most,
    where p(true) is lowest, then the positions farthest from those already chosen."""
    rows, cols = np.meshgrid(np.arange(maps.feature.shape[0]), np.arange(maps.feature.shape[1]), indexing="ij")
    cells = [np.unravel_index(np.argmin(maps.feature), maps.feature.shape),
             np.unravel_index(np.argmin(maps.prob_true), maps.prob_true.shape)]
    while len(cells) < k:
        dist = np.min([np.hypot(rows - i, cols - j) for i, j in cells], axis=0)
        cells.append(np.unravel_index(np.argmax(dist), dist.shape))
    return [(int(i) * stride, int(j) * stride) for i, j in cells[:k]]


def panel(config: Any, subject: Subject, layer: str, x: np.ndarray, label: int) -> plots.OcclusionPanel:
    """The maps, the unoccluded activation map and the projections for one image."""
    net = subject.net
    maps = occlusion.occlusion_maps(net, None, x, label, patch=config.patch, stride=config.stride,
                                    fill=config.fill, layer=layer, batch_size=config.batch_size)
    at = corners(maps, config.stride, config.projections)
    boxes = [(y, c, config.patch, config.patch) for y, c in at]
    batch = np.concatenate([x[None], correspondence.mask(np.repeat(x[None], len(at), 0), boxes, config.fill)])
    acts = np.asarray(net.feature_map(layer)(net.variables, batch))[..., maps.channel]  # (B, h, w)
    strongest = np.stack(np.unravel_index(acts.reshape(len(batch), -1).argmax(1), acts.shape[1:]), 1)
    projections = tiles.project_units(net, layer, batch, np.full(len(batch), maps.channel), strongest)
    return plots.OcclusionPanel(net.to_display(batch[2]), at[1], label, maps, acts[0], projections,
                                       [None] + at)


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The whole experiment; returns the figures it wrote (for the demo's report)."""
    workdir = pathlib.Path(workdir)
    if config.projections < 2:
        raise ValueError(f"projections must be >= 2 (the map's and p(true)'s worst positions), "
                         f"got {config.projections}")
    subject = subject_lib.load(config)
    layer = subject.layers([config.layer] if config.layer else ())[-1]
    x, labels = images_lib.load(config, subject)
    names = subject.class_names(config)
    panels = [panel(config, subject, layer, xi, int(y)) for xi, y in zip(x, labels)]
    fig = plots.occlusion_figure(panels, names,
                                        patch=config.patch, stride=config.stride, layer=layer)
    fig.suptitle(f"Occlusion sensitivity (Fig. 7): {subject.describe()}", y=1.0)
    plots.save_figure(fig, workdir / "occlusion.png")
    files.write_json(workdir / "results.json", {
        "network": subject.source, "layer": layer,
        "images": [{"label": names[p.label], "channel": p.maps.channel, "prob_true": p.maps.prob_true,
                    "top_label": p.maps.top_label, "feature": p.maps.feature, "projected_at": p.corners[1:]}
                   for p in panels], "config": config.to_dict()})
    figures = [pages.Figure(
        "occlusion.png", "Occlusion sensitivity (Fig. 7)",
        f"One row per image. (a) the image with the {config.patch}x{config.patch} grey square (the mean pixel) where "
        f"it lowers p(true class) most; (b) the {layer} feature map with the largest total activation on the "
        f"unoccluded image; (c) that map's total activation as a function of the square's position (each cell is "
        f"drawn at the square's centre; stride {config.stride}); (d) its deconvnet projection without the square and "
        f"with the square at the black boxes (where the map drops most, where p(true) is lowest, and far away); "
        f"(e) p(true class) and (f) the most probable class as functions of the square's position. Dark/cold "
        f"regions in (c) and (e) are the parts of the image the feature and the classifier rely on.")]
    pages.write_index(workdir, "Occlusion sensitivity (Fig. 7)", figures,
                       intro=f"Network: {subject.describe()}. {subject.caveat()}")
    return figures


if __name__ == "__main__":
    subject_lib.main(run)
