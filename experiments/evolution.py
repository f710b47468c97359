"""Fig. 4: how features develop during training. For a few feature maps of each layer, the strongest activation
over (the first ``num_images`` of) the training set, found again at every epoch snapshot of the run and projected
to pixels, one column per epoch.

    python -m experiments.evolution --config=experiments/configs/evolution.py --workdir=runs/evolution \
        --config.checkpoint=runs/fmnist

The maps are drawn among those that fire in the last snapshot. Writes ``evolution.png``, ``results.json`` (per
layer, map and epoch: the activation, image and position) and ``index.html``.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import pathlib
from typing import Any

import numpy as np
from absl import logging

from experiments import subject as subject_lib
from experiments.subject import Subject
from zfjax import files
from zfjax.analyses import topk
from zfjax.pictures import pages, plots, tiles
from zfjax.training import checkpoints


def strongest(subject: Subject, variables: Any, config: Any, source: Any, layer: str) -> topk.TopK:
    """Per map of `layer`, its strongest activation over `source` under `variables`."""
    return topk.scan(subject.net.feature_map(layer), variables,
                     subject_lib.batches(subject, source, config.batch_size, config.num_threads), k=1)


def snapshots(config: Any, subject: Subject) -> dict[int, Any]:
    """epoch -> the variables of that epoch's snapshot: a training run's, or those the user's model spec gives."""
    if subject.built is None:
        if subject.net.snapshots is None:
            raise ValueError(f"feature evolution needs snapshots: the model {subject.net.name} has none (its "
                             f"Network's snapshots field)")
        snaps = dict(subject.net.snapshots())
    else:
        snaps = checkpoints.snapshots(config.checkpoint)
    if not snaps:
        raise FileNotFoundError(f"no epoch snapshots in {config.checkpoint or subject.source} (set the training "
                                f"config's snapshot_epochs)")
    return snaps


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The experiment (see the module docstring); returns the figures it wrote into `workdir`."""
    if not (config.model or config.checkpoint):
        raise ValueError("feature evolution needs a training run's epoch snapshots: set --config.checkpoint=<workdir> "
                         "(or a model whose Network has snapshots, --config.model=...)")
    subject = subject_lib.load(config)
    snaps = snapshots(config, subject)
    epochs = sorted(snaps)
    source = subject_lib.subset(subject.data.train, config.num_images)
    images = subject_lib.images(subject, source)
    columns, results = {}, {}
    for layer in subject.layers(config.layers):
        last = strongest(subject, snaps[epochs[-1]], config, source, layer)
        maps = subject_lib.pick_maps(last.values[:, 0], config.maps_per_layer, config.seed)
        per_epoch = []
        for epoch in epochs:
            logging.info("%s, epoch %d", layer, epoch)
            top = last if epoch == epochs[-1] else strongest(subject, snaps[epoch], config, source, layer)
            per_epoch.append(tiles.top_tiles(subject.net, top, maps, images, layer, variables=snaps[epoch]))
            results.setdefault(layer, {"maps": maps, "epochs": {}})["epochs"][epoch] = {
                "value": top.values[maps, 0], "image": top.image[maps, 0], "h": top.h[maps, 0], "w": top.w[maps, 0]}
        columns[layer] = np.concatenate([t.projections for t in per_epoch], axis=1)  # (maps, epochs, S, S, C)
    plots.save_figure(plots.evolution_figure(columns, epochs, "Feature evolution during training"),
                       workdir / "evolution.png")
    figures = [pages.Figure("evolution.png", "Feature evolution (Fig. 4)",
                             f"Each panel is one layer; each row one of its feature maps ({len(snaps)} snapshots, "
                             f"epochs {', '.join(map(str, epochs))} left to right). A tile is the projection of "
                             f"that map's strongest activation over {len(source)} training images at that epoch, "
                             f"cut to the unit's receptive field and stretched to its own range (grey = 0). A "
                             f"tile that changes image from one epoch to the next has found a new best input. A "
                             f"tile crossed out in red is a zero projection: the map fired on none of the images "
                             f"at that epoch.")]
    files.write_json(workdir / "results.json", {"network": subject.source, "num_images": len(source),
                                                 "epochs": epochs, "layers": results})
    pages.write_index(workdir, "Feature evolution (Fig. 4)", figures,
                       intro=f"Training run {config.checkpoint or subject.source}; the first {len(source)} training "
                             f"images searched.")
    return figures


if __name__ == "__main__":
    subject_lib.main(run)
