"""The one-command demo (``make demo``): train the small ZF-style net on Fashion-MNIST for about a minute or two,
then write a learning-curve figure, the learned conv1 filters and an ``index.html`` showing them into ``--workdir``.

    python -m experiments.demo --workdir=runs/demo [--num_epochs=1]

Re-running into the same workdir resumes/reuses the finished training (checkpoints are kept there).
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import pathlib

import numpy as np
from absl import app, flags

from experiments.configs import fashion_mnist
from zfjax import checkpoints, metrics, report, train

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output directory (training run + figures + index.html).")
_EPOCHS = flags.DEFINE_float("num_epochs", 1, "Training length in epochs of Fashion-MNIST (60k images).")


def filter_figure(w: np.ndarray, title: str):
    """A grid of first-layer filters (HWIO, one input channel or RGB), each contrast-stretched on its own."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = w.shape[-1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < n:
            f = w[..., i]
            f = (f - f.min()) / max(f.max() - f.min(), 1e-12)
            ax.imshow(f[..., 0] if f.shape[-1] == 1 else f, cmap="gray", interpolation="nearest")
    fig.suptitle(title)
    return fig


def main(argv: list[str]) -> None:
    del argv
    workdir = pathlib.Path(_WORKDIR.value)
    config = fashion_mnist.get_config()
    steps = int(round(_EPOCHS.value * (60000 // config.batch_size)))
    config.max_steps = steps
    config.num_epochs = max(1, int(np.ceil(_EPOCHS.value)))
    config.eval_every_steps = max(1, steps // 4)
    train.train_and_evaluate(config, workdir / "train")
    step, params = checkpoints.latest(workdir / "train")
    series = metrics.read(workdir / "train" / metrics.METRICS_FILE)
    top1 = series["eval_top1"][max(series["eval_top1"])]
    report.write_json(workdir / "results.json", {"step": step, "test_top1": top1})
    report.save_figure(filter_figure(np.asarray(params["conv1"]["w"]), f"conv1 filters after {step} steps"),
                       workdir / "conv1_filters.png")
    report.write_index(workdir, "zfjax demo: a small ZF-style net on Fashion-MNIST", [
        report.Figure(f"train/{metrics.CURVES_FILE}", "Learning curves",
                      "Training loss (left) and top-1 error on the 10,000 test images (right) against SGD steps."),
        report.Figure("conv1_filters.png", "First-layer filters",
                      "The 32 learned 5x5 conv1 filters, each scaled to its own range (white = largest weight). "
                      "After one epoch they are still noisy; compare Fig. 2 (layer 1) of the paper."),
    ], intro=f"Trained for {step} steps (batch {config.batch_size}); test top-1 accuracy {100 * top1:.2f}%.")


if __name__ == "__main__":
    app.run(main)
