"""Table 6: PASCAL VOC 2012. Layer-7 features of a trained net (layers 1-7 frozen), one logistic (one-vs-all,
2-way softmax) classifier per class trained on ``train``, per-class average precision and mean AP on ``validation``.

    python -m experiments.voc --config=experiments/configs/voc.py --workdir=runs/voc --config.pretrain_workdir=...

Writes ``results.json``, ``results.md``, ``index.html`` (the 20-class table beside the paper's) and
``average_precision.png``.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import pathlib
from typing import Any

import numpy as np

from experiments import cli, pretrained
from zfjax import files
from zfjax.analyses import probe, transfer
from zfjax.data import transfer as transfer_data
from zfjax.pictures import pages, plots
from zfjax.training import trained

# The paper's Table 6 (AP %, VOC 2012 test), in the order of TFDS's class names; mean 79.0.
PAPER = {"aeroplane": 96.0, "bicycle": 77.1, "bird": 88.4, "boat": 85.5, "bottle": 55.8, "bus": 85.8, "car": 78.6,
         "cat": 91.2, "chair": 65.0, "cow": 74.4, "diningtable": 67.7, "dog": 87.8, "horse": 86.0,
         "motorbike": 85.1, "person": 90.9, "pottedplant": 52.2, "sheep": 83.6, "sofa": 61.1, "train": 91.8,
         "tvmonitor": 76.1}
PAPER_MEAN = 79.0


def features(net: trained.Net, data: transfer_data.Labelled, batch_size: int) -> np.ndarray:
    """The last hidden fc layer (fc7) of every image."""
    x = net.inputs([data.images[i] for i in range(len(data.labels))])
    return transfer.extract_all(net.arch, net.params, x, net.arch.fcs[-1].name, batch_size=batch_size)


def figure(classes: tuple[str, ...], ap: np.ndarray):
    """Per-class AP, ours beside the paper's."""
    return plots.grouped_bars(classes, {"ours (validation)": 100 * np.nan_to_num(ap),
                                      "paper (test)": [PAPER.get(c, np.nan) for c in classes]},
                            ylabel="average precision (%)", rotation=45)


def run(config: Any, workdir: pathlib.Path) -> dict[str, Any]:
    """The whole experiment (see the module docstring); returns what it writes to results.json."""
    train_data = transfer_data.voc2012("train", config.data_dir or None)
    val_data = transfer_data.voc2012("validation", config.data_dir or None)
    net = pretrained.load(config.pretrain, config.pretrain_workdir, train_if_missing=config.train_if_missing)
    head = probe.fit_linear(features(net, train_data, config.batch_size), train_data.labels, loss="sigmoid",
                               l2=config.head_l2, steps=config.head_steps)
    ap = probe.average_precision(val_data.labels, head.logits(features(net, val_data, config.batch_size)))
    classes = val_data.classes
    header = ["class", "ours: AP (validation)", "paper: AP (test)"]
    cell = lambda v: "—" if np.isnan(v) else f"{100 * v:.1f}"  # noqa: E731
    rows = [[c, cell(a), PAPER.get(c, "—")] for c, a in zip(classes, ap)]
    rows.append(["mean", cell(probe.mean_ap(ap)), PAPER_MEAN])
    results = {"classes": list(classes), "average_precision": ap, "mean_ap": probe.mean_ap(ap),
               "num_train": len(train_data.labels), "num_validation": len(val_data.labels), "pretrained_step": net.step,
               "table": {"header": header, "rows": rows}, "config": config.to_dict()}
    files.write_json(workdir / "results.json", results)
    files.write_text(workdir / "results.md", pages.markdown_table(header, rows) + "\n")
    plots.save_figure(figure(classes, ap), workdir / "average_precision.png")
    pages.write_index(workdir, "PASCAL VOC 2012 classification (Table 6)", [
        pages.Figure("average_precision.png", "Average precision per class",
                      "Ours on the validation split (trained on train) beside the paper's on the test server.")],
        intro=f"One-vs-all logistic classifiers on {net.arch.fcs[-1].name} features of {config.pretrain_workdir} "
              f"(step {net.step}); {len(train_data.labels)} train, {len(val_data.labels)} validation images.",
        tables=[("Average precision % (ours: measured here on validation; paper: its Table 6 on test)", header,
                 rows)])
    return results


if __name__ == "__main__":
    cli.main(run)
