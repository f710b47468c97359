"""Training metrics: ``metrics.jsonl`` (always), TensorBoard event files (tensorboardX's writer: it needs no
TensorFlow, so a Fashion-MNIST run never loads it), and the learning-curve figure.

A resumed run appends to ``metrics.jsonl`` and may repeat steps done after its last checkpoint; `read` keeps the
last value written for each (step, name). Each row is one ``write`` ending in a newline, so a run killed mid-write
leaves at most one unterminated last line: `read` ignores it and the next `Writer` cuts it off before appending.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import pathlib
from typing import Any

from zfjax.pictures import plots

METRICS_FILE, CURVES_FILE = "metrics.jsonl", "learning_curves.png"


def _tensorboard_writer(workdir: pathlib.Path) -> Any:
    if importlib.util.find_spec("tensorboardX") is None:
        logging.warning("tensorboardX is not installed: no event files, metrics go to %s only", METRICS_FILE)
        return None
    import tensorboardX
    return tensorboardX.SummaryWriter(str(workdir), flush_secs=10)


def _drop_torn_tail(path: pathlib.Path) -> None:
    """Cut an unterminated last line (a write interrupted by a kill) so appended rows start on their own line."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            logging.warning("%s ends in an incomplete row (interrupted write); dropping it", path)
            f.truncate(data.rfind(b"\n") + 1)


class Writer:
    """Scalars per step to ``metrics.jsonl`` and TensorBoard; writes only on host 0."""

    def __init__(self, workdir: str | pathlib.Path, enabled: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.enabled = enabled
        if enabled:
            _drop_torn_tail(self.workdir / METRICS_FILE)
        self.tb = _tensorboard_writer(self.workdir) if enabled else None

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n"
        with open(self.workdir / METRICS_FILE, "a") as f:
            f.write(row)
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(name, float(value), int(step))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read(path: str | pathlib.Path) -> dict[str, dict[int, float]]:
    """{name: {step: value}} from a metrics.jsonl; later lines win (a resumed run re-does some steps); an
    unterminated last line (interrupted write) is ignored."""
    out: dict[str, dict[int, float]] = {}
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                logging.warning("%s: ignoring the incomplete last row %r (interrupted write)", path, line[:80])
                break
            if not line.strip():
                continue
            row = json.loads(line)
            step = row.pop("step")
            for k, v in row.items():
                out.setdefault(k, {})[step] = v
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def final(path: str | pathlib.Path, name: str) -> float | None:
    """The value of `name` at the last step that logged it in a metrics.jsonl; None without the file or the name."""
    path = pathlib.Path(path)
    series = read(path).get(name) if path.is_file() else None
    return float(series[max(series)]) if series else None


def plot_learning_curves(workdir: str | pathlib.Path) -> pathlib.Path:
    """Train loss and train/eval top-1 error against step, from ``metrics.jsonl`` to ``learning_curves.png``."""
    plt = plots.pyplot()
    workdir = pathlib.Path(workdir)
    series = read(workdir / METRICS_FILE)
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, label in (("train_loss", "train"), ("eval_loss", "eval (crop-averaged)")):
        if name in series:
            ax_loss.plot(list(series[name]), list(series[name].values()), label=label,
                         marker="." if "eval" in name else None)
    for name, label in (("train_accuracy", "train top-1"), ("eval_top1", "eval top-1"), ("eval_top5", "eval top-5")):
        if name in series:
            err = [100 * (1 - v) for v in series[name].values()]
            ax_err.plot(list(series[name]), err, label=label, marker="." if "eval" in name else None)
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax_err.set(xlabel="step", ylabel="error %", title="error")
    if any(math.isfinite(v) and v > 0 for v in series.get("train_loss", {}).values()):
        ax_loss.set_yscale("log")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return plots.save_figure(fig, workdir / CURVES_FILE)
