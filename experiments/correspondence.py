"""Table 1 (correspondence): the same part masked in several images of one kind of object; Delta_l (the mean
normalized Hamming distance between the sign patterns of the feature changes, `zfjax.analyses.correspondence`) at the
paper's layers 5 and 7, against random boxes as the control. Lower Delta = more consistent change.

    python -m experiments.correspondence --config=experiments/configs/correspondence.py --workdir=runs/correspondence

Writes ``results.json``, ``results.md`` and ``index.html`` (the table, the paper's numbers beside it) and
``masks.png`` (every image with each part's box and one draw of random boxes).
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
from zfjax.analyses import correspondence
from zfjax.pictures import pages, plots

# The paper's Table 1 (5 dog images): part -> (layer 5, layer 7) Delta, mean ± std.
PAPER = {"right eye": ("0.067 ± 0.007", "0.069 ± 0.015"), "left eye": ("0.069 ± 0.007", "0.068 ± 0.013"),
         "nose": ("0.079 ± 0.017", "0.069 ± 0.011"), "random": ("0.107 ± 0.017", "0.073 ± 0.014")}


def part_boxes(box: Any, n: int) -> np.ndarray:
    """A config box: one (top, left, height, width) for all `n` images, or `n` of them."""
    boxes = np.asarray(box, dtype=np.int64)
    return np.repeat(boxes[None], n, 0) if boxes.shape == (4,) else boxes


def scores(config: Any, subject: Subject, x: np.ndarray, layers: list[str]) -> dict[str, dict]:
    """part (and "random") -> {"boxes": [per repeat (N, 4)], layer: correspondence.Score}."""
    boxes = {name: [part_boxes(b, len(x))] for name, b in config.parts.items()}
    size = tuple(part_boxes(next(iter(config.parts.values())), len(x))[0, 2:])
    rng = np.random.default_rng(config.seed)
    boxes["random"] = [correspondence.random_boxes(rng, len(x), size, config.random_within)
                       for _ in range(config.random_repeats)]
    out = {}
    for name, draws in boxes.items():
        signs = [correspondence.sign_changes(subject.net, None, x, b, layers, fill=config.fill, rtol=config.rtol)
                 for b in draws]
        out[name] = {"boxes": draws, **{layer: correspondence.score([s[layer] for s in signs]) for layer in layers}}
    return out


def table(config: Any, result: dict, layers: list[str]) -> tuple[list[str], list[list[str]]]:
    header = ["part"] + [f"layer {k} ({name}): Δ ± std over pairs" for k, name in zip(config.layers, layers)]
    rows = []
    for name, r in result.items():
        cells = [f"{r[layer].delta:.3f} ± {r[layer].std_pairs:.3f}" for layer in layers]
        if name == "random":
            cells = [c + f" (± {r[layer].std_repeats:.3f} over {config.random_repeats} draws)"
                     for c, layer in zip(cells, layers)]
        rows.append([name] + cells)
    return header, rows


def run(config: Any, workdir: pathlib.Path) -> list[pages.Figure]:
    """The whole experiment; returns the figures it wrote (for the demo's report)."""
    workdir = pathlib.Path(workdir)
    subject = subject_lib.load(config)
    x, labels = images_lib.load(config, subject)
    names = subject.class_names(config)
    if len(x) < 2:
        raise ValueError(f"correspondence needs at least 2 images, got {len(x)}")
    layers = subject.layers(config.layers)
    result = scores(config, subject, x, layers)
    header, rows = table(config, result, layers)
    masked = {name: subject.net.to_display(correspondence.mask(x, r["boxes"][0], config.fill))
              for name, r in result.items()}
    plots.save_figure(plots.masks_figure(masked, [names[int(y)] for y in labels]), workdir / "masks.png")
    files.write_json(workdir / "results.json", {
        "network": subject.source, "layers": layers, "images": [int(i) for i in config.indices] or config.images,
        "scores": {name: {"boxes": r["boxes"], **{layer: r[layer]._asdict() for layer in layers}}
                   for name, r in result.items()}, "table": {"header": header, "rows": rows},
        "config": config.to_dict()})
    files.write_text(workdir / "results.md", pages.markdown_table(header, rows) + "\n")
    paper = [[name, *v] for name, v in PAPER.items()]
    figures = [pages.Figure("masks.png", "The masked images",
                             "One row per part: each image with that part set to the mean pixel (the last row is one "
                             "of the random draws of the control).")]
    caption = (f"Ours: Δ_l = mean over ordered pairs i≠j of the fraction of the D features of layer l whose change "
               f"sign(f(x_i) - f(x~_i)) differs between images i and j ({len(x)} images; ± std over the pairs; "
               f"random: mean over {config.random_repeats} draws of random boxes). Lower = more consistent.")
    pages.write_index(workdir, "Correspondence (Table 1)", figures, intro=f"Network: {subject.describe()}. "
                       f"Images: {', '.join(names[int(y)] for y in labels)}. {subject.caveat()}",
                       tables=[(caption, header, rows),
                               ("The paper's Table 1 (5 dog images, ZFNet): Δ at layer 5 / layer 7",
                                ["part", "layer 5", "layer 7"], paper)])
    return figures


if __name__ == "__main__":
    subject_lib.main(run)
