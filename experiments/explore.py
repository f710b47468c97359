"""The unit explorer: every unit of every chosen layer (default: the conv layers) in one static page, generated
from one scan of the evaluation split (`zfjax.pictures.explorer`).

    python -m experiments.explore --config=experiments/configs/explore.py --workdir=runs/explore \
        --config.checkpoint=runs/fmnist

Writes ``index.html`` (open it from disk or any static host), its asset folder ``site-<id>/``, ``preview.png``
(each layer's overview, for reports that link the page) and ``results.json`` (layers, units, dead units, seconds).
With ``--coordinator_address``/``--num_processes``/``--process_id`` (or ``--distributed``) every process scans its
shard of the images, the top-k and statistics are merged across processes, and each renders its share of the
sprite sheets into the shared workdir; process 0 writes the page. See the config's docstring for the fields.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import dataclasses
import pathlib
import sys
import time
from typing import Any, Iterator

import jax
import numpy as np
from absl import logging

from experiments import distributed
from experiments import subject as subject_lib
from experiments.subject import Subject
from zfjax import files, network
from zfjax.analyses import unit_scan
from zfjax.data import pipeline
from zfjax.pictures import explorer, pages, plots, sprites


@dataclasses.dataclass(frozen=True)
class Images:
    """The images the explorer scans and shows: example i of `source` (a split of the subject's data) through its
    evaluation transform (the center view), as network input, as pixels in [0, 1], and its label."""
    subject: Subject
    source: Any

    def __len__(self) -> int:
        return len(self.source)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.int64]:
        """(network input, pixels in [0, 1], label) of example i."""
        ex = self.source[int(i)]
        views = self.subject.data.eval_transform(ex)["image"]
        x = self.subject.inputs(views[4 if len(views) == 10 else 0][None])  # the center crop of 10, or the only view
        return x[0], self.subject.net.to_display(x)[0], np.int64(ex["label"])

    def example(self, i: int) -> dict:
        """Example i as the scan reads it: its network input and label."""
        x, _, label = self._load(i)
        return {"image": x, "label": label}

    def __call__(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`explorer.Images`: (inputs, display) of those dataset indices."""
        loaded = [self._load(i) for i in np.asarray(indices).ravel()]
        return np.stack([x for x, _, _ in loaded]), np.stack([d for _, d, _ in loaded])

    def batches(self, batch_size: int, num_threads: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(inputs, indices, labels) of this process's share of the images, with a progress bar."""
        from tqdm import tqdm
        with tqdm(total=len(self), unit="img", desc="scan", leave=False, mininterval=1.0, file=sys.stderr,
                  disable=jax.process_index() != 0) as bar:
            seen = 0
            for b in pipeline.shard_batches(self.example, len(self), batch_size=batch_size, num_threads=num_threads):
                yield b["image"], b["index"], b["label"]
                seen += len(b["index"])
                bar.update(len(b["index"]) * jax.process_count())
        logging.info("explorer: process %d scanned %d of the %d images", jax.process_index(), seen, len(self))


def load(config: Any) -> tuple[network.Network, Images, str]:
    """The network of the config's network fields (``model``: a user's own), its images and a caption."""
    subject = subject_lib.load(config)
    net = dataclasses.replace(subject.net, class_names=subject.class_names(config))
    images = Images(subject, subject_lib.subset(subject.data.eval, config.num_images))
    chosen = subject.layers(config.layers)
    for layer in chosen:
        net.feature_map(layer)
    return dataclasses.replace(net, layers={k: net.layers[k] for k in chosen}), images, \
        f"{subject.describe()} on {subject.data.name}"


def explore(net: network.Network, images: Images, workdir: pathlib.Path, config: Any, about: str) -> list[
        pages.Figure]:
    """Scan `images` for every unit of the chosen layers, write the explorer into `workdir` (module docstring)."""
    layers = list(net.layers)
    if not 1 <= config.k <= config.histogram_k:
        raise ValueError(f"need 1 <= k <= histogram_k, got k={config.k}, histogram_k={config.histogram_k}")
    if not len(images):
        raise ValueError(f"no images to explore: the dataset ({images.source!r}) is empty")
    if jax.process_index() == 0:
        explorer.check_workdir(workdir)
    start = time.perf_counter()
    logging.info("explorer: scanning %d images for %s", len(images), ", ".join(layers))
    stats = unit_scan.scan(net, layers, images.batches(config.batch_size, config.num_threads), k=config.histogram_k)
    scanned = time.perf_counter()
    caption = f"{about}: {len(images)} images of the evaluation split, top {config.k} per unit"
    site = explorer.build(net, stats, images, workdir, k=config.k, class_names=net.class_names, about=caption,
                          tile_size=config.tile_size)
    if site is None:
        return []
    seconds = {"scan": round(scanned - start, 1), "site": round(time.perf_counter() - scanned, 1)}
    plots.save_figure(_preview(site), workdir / "preview.png")
    files.write_json(workdir / "results.json", {
        "about": caption, "images": len(images), "seconds": seconds, "site": site.folder.name,
        "layers": {n: {"units": int(s.top.values.shape[0]), "dead": int((s.top.values[:, 0] <= 0).sum())}
                   for n, s in stats.items()}})
    units = sum(int(s.top.values.shape[0]) for s in stats.values())
    return [pages.Figure("preview.png", "Unit explorer", f"Every one of the {units} units of {', '.join(layers)}: "
                          f"each panel is a layer's overview (every unit's strongest activation projected to "
                          f"pixels). Click it to open the explorer (index.html): a page per unit with its top "
                          f"{config.k} projections and patches, guided backprop and saliency of its top image, and "
                          f"its statistics over the {len(images)} images.", link="index.html")]


def _preview(site: explorer.Site):
    """A figure of every layer's overview sheet."""
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(site.overviews), figsize=(3 * len(site.overviews), 3.4), squeeze=False)
    for ax, (layer, path) in zip(axes[0], site.overviews.items()):
        plots.show(ax, sprites.load(path) / 255.0, layer)
    fig.tight_layout()
    return fig


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The experiment (module docstring); returns its figure (a preview linking the page) on process 0."""
    net, images, about = load(config)
    return explore(net, images, pathlib.Path(workdir), config, about)


def _main(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    distributed.initialize()
    return run(config, workdir)


if __name__ == "__main__":
    distributed.define_flags()
    subject_lib.main(_main)
