"""Fig. 5 (invariance): images translated vertically, scaled and rotated; the Euclidean distance between the
feature vectors of the original and the transformed image at the paper's layers 1 and 7, and p(true class).

    python -m experiments.invariance --config=experiments/configs/invariance.py --workdir=runs/invariance

Writes ``invariance.png`` (3 columns = transforms; rows = example images, layer-1 distance, layer-7 distance,
p(true class)), ``results.json`` (every curve) and ``index.html``. See the config's docstring for the fields.
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
from zfjax.analyses import invariance
from zfjax.pictures import pages, plots

EXAMPLES = 5  # transformed copies of the first image shown above each column


def sweeps(config: Any, subject: Subject, x: np.ndarray, labels: np.ndarray, layers: list[str]):
    """The three sweeps of ``config`` (translation, scale, rotation)."""
    ranges = {"translate": config.translations, "scale": config.scales, "rotate": config.rotations}
    return [invariance.sweep(subject.net, None, x, labels, kind, values, layers=layers, fill=config.fill,
                             batch_size=config.batch_size) for kind, values in ranges.items()]


def examples(subject: Subject, image: np.ndarray, sweep_list, fill: float) -> dict:
    """A few values of each sweep (evenly spaced) and the first image transformed by them, for display."""
    out = {}
    for sw in sweep_list:
        values = sw.values[np.linspace(0, len(sw.values) - 1, min(EXAMPLES, len(sw.values))).round().astype(int)]
        images = np.concatenate([np.asarray(invariance.transform(image[None], sw.kind, v, fill)) for v in values])
        out[sw.kind] = (values, subject.net.to_display(images))
    return out


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The whole experiment; returns the figures it wrote (for the demo's report)."""
    workdir = pathlib.Path(workdir)
    subject = subject_lib.load(config)
    x, labels = images_lib.load(config, subject)
    names = subject.class_names(config)
    layers = subject.layers(config.layers)
    result = sweeps(config, subject, x, labels, layers)
    names = [names[int(y)] for y in labels]
    titles = {name: f"layer {k} ({name}): distance to original" for k, name in zip(config.layers, layers)}
    fig = plots.invariance_figure(result, titles, names, examples(subject, x[0], result, config.fill))
    fig.suptitle(f"Invariance (Fig. 5): {subject.describe()}", y=0.995)
    plots.save_figure(fig, workdir / "invariance.png")
    files.write_json(workdir / "results.json", {
        "network": subject.source, "images": names, "layers": layers,
        "sweeps": {sw.kind: {"values": sw.values, "prob_true": sw.prob_true,
                             "distance": sw.distance} for sw in result},
        "config": config.to_dict()})
    figures = [pages.Figure(
        "invariance.png", "Invariance to translation, scale and rotation (Fig. 5)",
        f"Columns: vertical translation, scale, rotation; the top strip shows the first image ({names[0]}) at a "
        f"few values (outside the image: the mean pixel). Rows 2-3: Euclidean distance between the feature vectors "
        f"of the original and the transformed image at layer {config.layers[0]} ({layers[0]}) and layer "
        f"{config.layers[-1]} ({layers[-1]}); row 4: the probability of the true class. One line per image. "
        f"The paper finds large changes at layer 1 for small transforms, smaller (quasi-linear) ones at layer 7, "
        f"and an output that is invariant to translation and scale but not to rotation.")]
    pages.write_index(workdir, "Invariance (Fig. 5)", figures, intro=f"Network: {subject.describe()}; "
                       f"images: {', '.join(names)}. {subject.caveat()}")
    return figures


if __name__ == "__main__":
    subject_lib.main(run)
