"""Tables 4, 5 and Fig. 9: a trained net's layers 1-7 frozen with a new softmax on top, trained on N images per
class, against the same net trained from scratch on those N; mean ± std over random splits.

    python -m experiments.transfer --config=experiments/configs/transfer.py:digits --workdir=runs/transfer_digits

Writes ``results.json`` (accuracy per split), ``results.md`` and ``index.html`` (the table, the paper's numbers
beside it) and ``accuracy_vs_shots.png`` (Fig. 9's curve). See the config's docstring for datasets and fields.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import dataclasses
import logging
import pathlib
from typing import Any

import numpy as np

from experiments import cli, pretrained
from zfjax import files
from zfjax.analyses import probe, transfer
from zfjax.data import transfer as transfer_data
from zfjax.pictures import pages, plots
from zfjax.training import trained

# The paper's accuracies (%, mean ± std over 5 splits) per dataset and N: (pre-trained + softmax, from scratch).
PAPER = {
    "caltech101": {15: ("83.8 ± 0.5", "22.8 ± 1.5"), 30: ("86.5 ± 0.5", "46.5 ± 1.7")},
    "caltech256": {15: ("65.7 ± 0.2", "9.0 ± 1.4"), 30: ("70.6 ± 0.2", "22.5 ± 0.7"), 45: ("72.7 ± 0.4", "31.2 ± 0.5"),
                   60: ("74.2 ± 0.3", "38.8 ± 1.4")},
}


def _scratch_config(config: Any, split: int) -> transfer.ScratchConfig:
    return transfer.ScratchConfig(epochs=config.scratch_epochs, min_steps=config.scratch_min_steps,
                                  batch_size=config.scratch_batch_size, learning_rate=config.scratch_learning_rate,
                                  weight_decay=config.scratch_weight_decay, radius=config.pretrain.radius,
                                  seed=config.seed + split)


def evaluate_split(config: Any, net: trained.Net, x: np.ndarray, feats: np.ndarray, labels: np.ndarray,
                   num_classes: int, shots: int, split: int) -> dict[str, float]:
    """Test accuracy of the frozen net + new softmax, and of the net trained from scratch, on one random split."""
    train_idx, test_idx = transfer_data.per_class_split(labels, shots, max_test=config.max_test or None,
                                                        seed=config.seed + 1000 * shots + split)
    if not len(test_idx):
        raise ValueError(f"no test images left with {shots} training images per class")
    head = probe.fit_linear(feats[train_idx], labels[train_idx], l2=config.head_l2, steps=config.head_steps,
                               num_classes=num_classes)
    out = {"pretrained": probe.accuracy(head.logits(feats[test_idx]), labels[test_idx]),
           "num_train": len(train_idx), "num_test": len(test_idx)}
    if config.scratch:
        arch = dataclasses.replace(net.arch, num_classes=num_classes)
        params = transfer.train_scratch(arch, x[train_idx], labels[train_idx], _scratch_config(config, split))
        out["scratch"] = probe.accuracy(transfer.predict(arch, params, x[test_idx]), labels[test_idx])
    logging.info("N=%d split %d: %s", shots, split, out)
    return out


def table(config: Any, runs: dict[int, list[dict[str, float]]], layer: str) -> tuple[list[str], list[list[str]]]:
    """Rows: ours (frozen + softmax), ours (scratch), and the paper's rows for Caltech; columns: N per class."""
    header = ["method"] + [f"{n}/class" for n in config.shots]
    kinds = [("pretrained", f"ours: frozen layers up to {layer} + softmax"), ("scratch", "ours: same net from scratch")]
    rows = [[name] + [pages.mean_std_cell([r[kind] for r in runs[n]]) for n in config.shots]
            for kind, name in kinds if kind in runs[config.shots[0]][0]]
    paper = PAPER.get(config.dataset)
    if paper:
        for k, name in enumerate(("paper: ImageNet-pretrained + softmax", "paper: from scratch")):
            rows.append([name] + [paper[n][k] if n in paper else "—" for n in config.shots])
    return header, rows


def figure(config: Any, runs: dict[int, list[dict[str, float]]], layer: str):
    """Fig. 9's curve: test accuracy against training images per class, mean ± std over splits."""
    kinds = (("pretrained", f"frozen up to {layer} + softmax"), ("scratch", "from scratch"))
    series = {label: [[r[kind] for r in runs[n]] for n in config.shots]
              for kind, label in kinds if kind in runs[config.shots[0]][0]}
    return plots.accuracy_curves(config.shots, series, xlabel="training images per class",
                               title=f"transfer to {config.dataset}")


def run(config: Any, workdir: pathlib.Path) -> dict[str, Any]:
    """The whole experiment (see the module docstring); returns what it writes to results.json."""
    data, net, x, dropped = pretrained.prepare(config)
    layer = config.layer or net.arch.fcs[-1].name
    feats = transfer.extract_all(net.arch, net.params, x, layer, batch_size=config.batch_size, grid=config.grid)
    num_classes = len(data.classes)
    runs = {n: [evaluate_split(config, net, x, feats, data.labels, num_classes, n, s) for s in range(config.num_splits)]
            for n in config.shots}
    header, rows = table(config, runs, layer)
    results = {"dataset": config.dataset, "num_images": len(data.labels), "num_classes": num_classes,
               "dropped_duplicates": dropped, "pretrained_step": net.step, "feature_layer": layer,
               "runs": {str(n): r for n, r in runs.items()}, "table": {"header": header, "rows": rows},
               "config": config.to_dict()}
    files.write_json(workdir / "results.json", results)
    files.write_text(workdir / "results.md", pages.markdown_table(header, rows) + "\n")
    plots.save_figure(figure(config, runs, layer), workdir / "accuracy_vs_shots.png")
    caption = (f"Test accuracy (%) on {config.dataset}, mean ± std over {config.num_splits} random splits; "
               f"rows marked 'paper' are the paper's numbers (ImageNet-pretrained ZFNet), the others ours")
    pages.write_index(workdir, f"Transfer to {config.dataset} (Tables 4/5, Fig. 9)", [
        pages.Figure("accuracy_vs_shots.png", "Accuracy against training images per class (Fig. 9)",
                      "Mean ± std over the random splits; frozen pre-trained features vs the same net from scratch.")],
        intro=f"Pre-trained net: {config.pretrain_workdir} (step {net.step}); {len(data.labels)} images, "
              f"{num_classes} classes, {dropped} duplicates of pre-training images dropped.",
        tables=[(caption, header, rows)])
    return results


if __name__ == "__main__":
    cli.main(run)
