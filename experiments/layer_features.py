"""Table 7: how discriminative each layer is. Features of layers 1-7 of a trained net (maps max-pooled into a
grid x grid layout, or the map's size where
it is smaller, and flattened, see `zfjax.analyses.features`), a linear SVM (scikit-learn `LinearSVC`) and a softmax per
layer, N training images per class; mean ± std over random splits, plotted against depth.

    python -m experiments.layer_features --config=experiments/configs/layer_features.py:digits \
        --workdir=runs/layer_features_digits

Writes ``results.json``, ``results.md``, ``index.html`` and ``accuracy_vs_layer.png``. Extracted features are
kept in ``<workdir>/features/<layer>/`` (.npy chunks), so a killed run resumes without recomputing them.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import logging
import pathlib
from typing import Any

import numpy as np

from experiments import cli, pretrained
from zfjax import files
from zfjax.analyses import features, probe, transfer
from zfjax.data import transfer as transfer_data
from zfjax.pictures import pages, plots

# The paper's Table 7 (accuracy %, Caltech-101 at 30/class, Caltech-256 at 60/class), by paper layer number.
PAPER = {
    "caltech101": {"svm": {1: 44.8, 2: 66.2, 3: 72.3, 4: 76.6, 5: 86.2, 7: 85.5}, "softmax": {5: 82.9, 7: 85.4}},
    "caltech256": {"svm": {1: 24.6, 2: 39.6, 3: 46.0, 4: 51.3, 5: 65.6, 7: 71.7}, "softmax": {5: 65.7, 7: 72.6}},
}
CLASSIFIERS = ("svm", "softmax")


def svm_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, c: float) -> float:
    """A one-vs-rest linear SVM on standardized features (scikit-learn)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    model = make_pipeline(StandardScaler(), LinearSVC(C=c, max_iter=5000)).fit(train_x, train_y)
    return float(np.mean(model.predict(test_x) == test_y))


def layer_accuracies(config: Any, feats: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, list[float]]:
    """Per split: test accuracy of the SVM and of the softmax on one layer's features."""
    out: dict[str, list[float]] = {k: [] for k in CLASSIFIERS}
    for split in range(config.num_splits):
        tr, te = transfer_data.per_class_split(labels, config.shots, max_test=config.max_test or None,
                                               seed=config.seed + split)
        out["svm"].append(svm_accuracy(feats[tr], labels[tr], feats[te], labels[te], config.svm_c))
        head = probe.fit_linear(feats[tr], labels[tr], l2=config.head_l2, steps=config.head_steps,
                                   num_classes=num_classes)
        out["softmax"].append(probe.accuracy(head.logits(feats[te]), labels[te]))
    return out


def figure(config: Any, layers: tuple[str, ...], acc: dict[str, dict[str, list[float]]]):
    """Accuracy against depth, one line per classifier (mean ± std over splits)."""
    depth = np.arange(1, len(layers) + 1)
    return plots.accuracy_curves(depth, {k: [acc[layer][k] for layer in layers] for k in CLASSIFIERS}, xlabel="layer",
                               title=f"{config.dataset}, {config.shots} training images per class",
                               xticklabels=[f"{d}\n{layer}" for d, layer in zip(depth, layers)])


def run(config: Any, workdir: pathlib.Path) -> dict[str, Any]:
    """The whole experiment (see the module docstring); returns what it writes to results.json."""
    data, net, x, _ = pretrained.prepare(config)
    layers = tuple(config.layers) or net.arch.paper_layers
    acc, dims = {}, {}
    for layer in layers:
        grid = min(config.grid, *net.arch.shapes()[layer][:2]) if len(net.arch.shapes()[layer]) == 3 else None
        feats = features.extract(net.arch, net.params, transfer.batches(x, config.batch_size), layer,
                                 grid=grid, out_dir=workdir / "features" / layer)
        dims[layer] = int(feats.shape[1])
        acc[layer] = layer_accuracies(config, feats, data.labels, len(data.classes))
        logging.info("%s (%d dims): %s", layer, dims[layer], acc[layer])
    header = ["layer", "features", "dims"] + [f"ours: {k}" for k in CLASSIFIERS]
    paper = PAPER.get(config.dataset)
    if paper:
        header += [f"paper: {k}" for k in CLASSIFIERS]
    rows = []
    for d, layer in enumerate(layers, 1):
        row = [d, layer, dims[layer]] + [pages.mean_std_cell(acc[layer][k]) for k in CLASSIFIERS]
        rows.append(row + ([paper[k].get(d, "—") for k in CLASSIFIERS] if paper else []))
    results = {"dataset": config.dataset, "shots": config.shots, "layers": list(layers), "dims": dims,
               "accuracy": acc, "pretrained_step": net.step, "table": {"header": header, "rows": rows},
               "config": config.to_dict()}
    files.write_json(workdir / "results.json", results)
    files.write_text(workdir / "results.md", pages.markdown_table(header, rows) + "\n")
    plots.save_figure(figure(config, layers, acc), workdir / "accuracy_vs_layer.png")
    caption = "Test accuracy (%) measured here" + (
        "; 'paper' columns from the paper's Table 7 (ImageNet-pretrained ZFNet)" if paper else
        " (the paper reports no numbers for this dataset)")
    pages.write_index(workdir, f"Features of each layer on {config.dataset} (Table 7)", [
        pages.Figure("accuracy_vs_layer.png", "Accuracy against depth",
                      f"Linear SVM and softmax on the features of each layer, {config.shots} training images per "
                      f"class, mean ± std over {config.num_splits} splits.")],
        intro=f"Maps max-pooled into a {config.grid}x{config.grid} grid and flattened; fc layers as they are. "
              f"Pre-trained net: {config.pretrain_workdir} (step {net.step}).",
        tables=[(caption, header, rows)])
    return results


if __name__ == "__main__":
    cli.main(run)
