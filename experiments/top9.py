"""Fig. 2: for chosen feature maps of layers 1-5, the 9 strongest activations over the whole evaluation split,
each projected to pixels (deconvnet) beside the image patch its unit sees; layer 1's filters as well.

    python -m experiments.top9 --config=experiments/configs/top9.py --workdir=runs/top9 --config.checkpoint=runs/fmnist

Writes ``top9_<layer>.png`` per layer, ``conv1_filters.png`` (built-in nets), ``results.json`` (maps, values,
images, positions) and ``index.html``. With ``--config.model=package.module:function`` it runs on a user's model
(``config.layers`` empty: the model's listed maps). See the config's docstring for the fields.
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


def layer_figure(subject: Subject, config: Any, source: Any, layer: str, workdir: pathlib.Path) -> tuple[
        pages.Figure, dict]:
    """Scan `source` for `layer`'s top k, project those of the chosen maps, save the figure; (figure, results)."""
    logging.info("top-%d scan of %s over %d images", config.k, layer, len(source))
    net = subject.net
    top = topk.scan(net.feature_map(layer), net.variables,
                    subject_lib.batches(subject, source, config.batch_size, config.num_threads), k=config.k)
    maps = subject_lib.pick_maps(top.values[:, 0], config.maps_per_layer, config.seed)
    cut = tiles.top_tiles(net, top, maps, subject_lib.images(subject, source), layer)
    size = cut.projections.shape[2]
    title = f"{layer}: top {top.values.shape[1]} of {len(source)} images, {len(maps)} of " \
            f"{top.values.shape[0]} maps (tiles of {size}x{size} pixels)"
    plots.save_figure(plots.top9_figure(cut.projections, cut.patches, title), workdir / f"top9_{layer}.png")
    caption = (f"Each 3x3 block on the left is one feature map of {layer} (maps {', '.join(map(str, maps))}, "
               f"read row by row): its {top.values.shape[1]} strongest activations over the split, each projected "
               f"back to pixels by the deconvnet (grey = 0; each projection stretched to its own range). The block "
               f"in the same place on the right shows the image patches those units see (the receptive field; "
               f"grey beyond the image border). Compare Fig. 2 of the paper.")
    results = {"maps": maps, "values": top.values[maps], "image": top.image[maps], "h": top.h[maps],
               "w": top.w[maps]}
    return pages.Figure(f"top9_{layer}.png", f"Top {config.k} of {layer}", caption), results


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The experiment (see the module docstring); returns the figures it wrote into `workdir`."""
    subject = subject_lib.load(config)
    source = subject_lib.subset(subject.data.eval, config.num_images)
    figures = [] if subject.built is None else [filters_figure(subject, workdir)]
    results = {}
    for layer in subject.layers(config.layers):
        figure, results[layer] = layer_figure(subject, config, source, layer, workdir)
        figures.append(figure)
    files.write_json(workdir / "results.json", {"network": subject.source, "num_images": len(source), **results})
    pages.write_index(workdir, "Top-9 activations per feature map (Fig. 2)", figures,
                       intro=f"Network: {subject.describe()}; images: {len(source)} of the evaluation split "
                             f"({subject.data.name}). {subject.caveat()}")
    return figures


def filters_figure(subject: Subject, workdir: pathlib.Path) -> pages.Figure:
    """A built-in net's first-layer filters themselves."""
    plots.save_figure(plots.filter_grid(np.asarray(subject.built.params["conv1"]["w"]), "conv1 filters"),
                       workdir / "conv1_filters.png")
    c1 = subject.arch.conv("conv1")
    return pages.Figure("conv1_filters.png", "Layer 1 filters",
                         f"The {c1.features} first-layer filters ({c1.kernel}x{c1.kernel}, stride {c1.stride}) "
                         f"themselves, each stretched to its own range (white = largest weight).")


if __name__ == "__main__":
    subject_lib.main(run)
