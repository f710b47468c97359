"""Fig. 6: first-layer filters, their frequency content, and second-layer top-9 projections of two nets that
differ only in conv1's kernel and stride (the paper: AlexNet's 11x11/4 against ZFNet's 7x7/2).

    python -m experiments.filters --config=experiments/configs/filters.py --workdir=runs/filters

Nets with no ``checkpoint`` are trained into ``<workdir>/<name>`` first (``train_if_missing``). Writes
``filters_<name>.png``, ``spectrum.png``, ``top9_<layer2>_<name>.png``, ``results.json`` (test accuracy, mean
frequencies) and ``index.html``. See the config's docstring for the nets and fields.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import pathlib
from typing import Any

import numpy as np
from absl import logging

from experiments import subject as subject_lib
from zfjax import files
from zfjax.analyses import spectrum, topk
from zfjax.pictures import pages, plots, tiles
from zfjax.training import train


def trained(config: Any, name: str, workdir: pathlib.Path) -> Any:
    """Net `name`'s config with ``checkpoint`` set, training it into ``workdir/name`` first when it has none."""
    net = config.nets[name]
    if net.checkpoint or net.weights or net.random_init:
        return net
    run_dir = workdir / name
    if not config.train_if_missing:
        raise FileNotFoundError(f"net {name!r} has no checkpoint: set --config.nets.{name}.checkpoint=<workdir>")
    logging.info("training net %s into %s", name, run_dir)
    train.train_and_evaluate(net.train, run_dir)
    net = net.copy_and_resolve_references()
    net.checkpoint = str(run_dir)
    return net


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The experiment (see the module docstring); returns the figures it wrote into `workdir`."""
    figures, spectra, mean_freqs, results, freqs = [], {}, {}, {}, None
    for name in config.nets:
        net_config = trained(config, name, workdir)
        subject = subject_lib.load(net_config)
        label = config.labels[name]
        arch = subject.arch  # compares built-in nets' first layers (ValueError for a user's model)
        w = np.asarray(subject.built.params[arch.convs[0].name]["w"])
        freqs, spectra[label] = spectrum.radial_spectrum(w, config.spectrum_size)
        mean_freqs[label] = spectrum.mean_frequency(w, config.spectrum_size)
        plots.save_figure(plots.filter_grid(w, f"{label}: conv1 filters"), workdir / f"filters_{name}.png")
        figures.append(pages.Figure(f"filters_{name}.png", f"Layer 1 filters, {label}",
                                     f"The {w.shape[-1]} first-layer filters of the {label} net, each stretched to "
                                     f"its own range (Fig. 6 (b)/(c))."))
        source = subject_lib.subset(subject.data.eval, config.num_images)
        top = topk.scan(subject.net.feature_map(config.layer2), subject.net.variables,
                        subject_lib.batches(subject, source, net_config.batch_size, net_config.num_threads),
                        k=config.k)
        maps = subject_lib.pick_maps(top.values[:, 0], config.maps_per_layer, config.seed)
        cut = tiles.top_tiles(subject.net, top, maps, subject_lib.images(subject, source), config.layer2)
        file = f"top9_{config.layer2}_{name}.png"
        plots.save_figure(plots.top9_figure(cut.projections, cut.patches,
                                           f"{label}: {config.layer2} top {top.values.shape[1]}"), workdir / file)
        figures.append(pages.Figure(file, f"Layer 2 features, {label}",
                                     f"Top-{top.values.shape[1]} projections (left) and image patches (right) of "
                                     f"{len(maps)} {config.layer2} maps of the {label} net (Fig. 6 (d)/(e)): "
                                     f"aliasing from a large conv1 stride shows as grid-like, blocky projections."))
        results[name] = {"label": label, "network": subject.source, "test_top1": subject.built.top1,
                         "mean_frequency": float(mean_freqs[label].mean()),
                         "dead_filters": int(np.sum(np.abs(w).max(axis=(0, 1, 2)) < 1e-6))}
    plots.save_figure(plots.spectrum_figure(freqs, spectra, mean_freqs, "conv1 frequency content"),
                       workdir / "spectrum.png")
    figures.insert(0, pages.Figure("spectrum.png", "Frequency content of the first-layer filters",
                                    "Left: the radially averaged power spectrum of the conv1 filters (mean removed, "
                                    "zero-padded to a common size, each normalized to unit power), averaged over "
                                    "filters. Right: the histogram of each filter's power-weighted mean frequency. "
                                    "The paper's complaint about 11x11/4 is a mix of very low and very high "
                                    "frequencies with few in between."))
    files.write_json(workdir / "results.json", results)
    rows = [[r["label"], "—" if r["test_top1"] is None else f"{100 * r['test_top1']:.2f}",
             f"{r['mean_frequency']:.3f}"] for r in results.values()]
    pages.write_index(workdir, "First-layer filters and aliasing (Fig. 6)", figures,
                       tables=[("The two nets", ["conv1", "test top-1 %", "mean filter frequency (cycles/px)"],
                                rows)])
    return figures


if __name__ == "__main__":
    subject_lib.main(run)
