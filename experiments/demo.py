"""The one-command demo (``make demo``): train the small ZF-style net on Fashion-MNIST (about 3 minutes on 2 CPU
cores), then run every visual experiment on it and on its test set and write ``<workdir>/index.html`` linking all
figures (and the tables experiments put in their results.json, e.g. correspondence's Δ).

    python -m experiments.demo --workdir=runs/demo
    python -m experiments.demo --workdir=/tmp/demo --tiny   # 1-2.5 minutes: a barely trained net

The net trains 6 epochs on the first 10,000 training images (the same 468 SGD steps as one pass over all 60,000)
so that Fig. 4 gets 6 epoch snapshots. Re-running into the same workdir reuses the finished training (and resumes
an interrupted one). Experiments: top9 (Fig. 2), evolution (Fig. 4), filters (Fig. 6, trains a second net with a
7x7/2 conv1), invariance (Fig. 5), occlusion (Fig. 7), correspondence (Table 1), the unit explorer (every unit of
conv1-conv5 in one page, ``<workdir>/explore/index.html``), and ``flax_resnet``: the worked example of one's own
model (`experiments.flax_resnet`, a Flax ResNet trained on the same data) through top9 and occlusion with
``--config.model``. Experiments are ``experiments.<name>`` with ``run(config, workdir) -> list[pages.Figure]``
and a config ``experiments/configs/<name>.py`` whose ``get_config(preset)`` has the network fields.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import importlib
import json
import pathlib
import time
from typing import Any

from absl import app, flags, logging

from experiments import cli
from experiments.configs import fashion_mnist, tiny
from zfjax import files
from zfjax.pictures import pages
from zfjax.training import checkpoints, metrics, train


EXPERIMENTS = ("top9", "evolution", "filters", "invariance", "occlusion", "correspondence", "explore", "flax_resnet")
OWN_MODEL = ("top9", "occlusion")  # the experiments the worked example of one's own model runs through


def train_config(preset: str) -> Any:
    """The demo's training run: ``fashion_mnist`` (6 epochs of 10k images, a snapshot per epoch) or ``tiny``."""
    if preset == "tiny":
        return tiny.get_config()
    c = fashion_mnist.get_config()
    c.train_subset = 10000
    c.num_epochs = 6
    c.lr_decay_epochs = (5,)
    c.snapshot_epochs = (1, 2, 3, 4, 5, 6)
    return c


def experiment_config(name: str, preset: str, config: Any, run_dir: pathlib.Path) -> Any:
    """`name`'s config for `preset`, pointed at the demo's trained net."""
    c = importlib.import_module(f"experiments.configs.{name}").get_config(preset)
    if name == "filters":  # the "fine" net is the demo's net; the "coarse" one trains alike with its own conv1
        c.nets.fine.train = config
        c.nets.fine.checkpoint = str(run_dir)
        coarse = config.copy_and_resolve_references()
        coarse.model_overrides.update({"conv1": c.nets.coarse.train.model_overrides.conv1.to_dict()})
        c.nets.coarse.train = coarse
        return c
    c.train = config
    c.checkpoint = str(run_dir)
    return c


def run(workdir: pathlib.Path, preset: str = "fashion_mnist", experiments: tuple[str, ...] = EXPERIMENTS) -> list[
        pages.Figure]:
    """Train (or reuse) the net, run `experiments` into ``workdir/<name>``, write ``workdir/index.html``."""
    from tqdm import tqdm
    config = train_config(preset)
    run_dir = workdir / "train"
    train.train_and_evaluate(config, run_dir)
    step, top1 = checkpoints.latest_step(run_dir), metrics.final(run_dir / metrics.METRICS_FILE, "eval_top1")
    figures = [pages.Figure(f"train/{metrics.CURVES_FILE}", "Learning curves",
                             "Training loss (left) and top-1 error on the test images (right) against SGD steps.")]
    seconds = {}
    for name in tqdm(experiments, desc="experiments", unit="exp"):
        start = time.perf_counter()
        logging.info("demo: running %s", name)
        if name == "flax_resnet":
            out = own_model(workdir / name, preset)
        else:
            out = importlib.import_module(f"experiments.{name}").run(
                experiment_config(name, preset, config, run_dir), workdir / name)
        figures += [f._replace(file=f"{name}/{f.file}", link=f.link and f"{name}/{f.link}") for f in out]
        seconds[name] = round(time.perf_counter() - start, 1)
    files.write_json(workdir / "results.json", {"step": step, "test_top1": top1, "seconds": seconds})
    intro = (f"The small ZF-style net trained for {step} steps (batch {config.batch_size}) on "
             f"{config.train_subset or 60000} Fashion-MNIST training images; test top-1 accuracy "
             f"{100 * top1:.2f}%. Each experiment's own page is <workdir>/<experiment>/index.html.")
    pages.write_index(workdir, "zfjax demo: the paper's visual experiments on Fashion-MNIST", figures, intro=intro,
                       tables=tables(workdir, list(seconds)))
    return figures


def own_model(workdir: pathlib.Path, preset: str) -> list[pages.Figure]:
    """The worked example of one's own model: train (or reuse) `experiments.flax_resnet` into ``workdir/train``,
    then run `OWN_MODEL` on it through ``--config.model``; the figures, titled as its."""
    from experiments import flax_resnet
    from experiments.configs import flax_resnet as resnet_config
    run_dir = workdir / "train"
    summary = flax_resnet.run(resnet_config.get_config("tiny" if preset == "tiny" else "default"), run_dir)
    figures = []
    for name in OWN_MODEL:
        c = importlib.import_module(f"experiments.configs.{name}").get_config(preset)
        c.model = f"experiments.flax_resnet:network:{run_dir}"
        out = importlib.import_module(f"experiments.{name}").run(c, workdir / name)
        figures += [f._replace(file=f"{name}/{f.file}", title=f"Your own model (a Flax ResNet, test top-1 "
                               f"{100 * summary['test_top1']:.1f}%): {f.title}") for f in out]
    return figures


def tables(workdir: pathlib.Path, names: list[str]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The table each experiment put in its results.json (correspondence's Δ), for the demo's page."""
    out = []
    for name in names:
        path = workdir / name / "results.json"
        table = json.loads(path.read_text()).get("table") if path.is_file() else None
        if isinstance(table, dict):
            out.append((f"{name} (details: {name}/index.html)", table["header"], table["rows"]))
    return out


def _define_flags() -> None:
    """Flags exist only when this module runs as a script, so tests can import several experiment modules."""
    flags.DEFINE_string("workdir", "runs/demo", "Output directory (training run + figures + index.html).")
    flags.DEFINE_bool("tiny", False, "Smoke run of 1-2.5 minutes: 512 training images, narrow layers, few images.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    start = time.perf_counter()
    workdir = pathlib.Path(flags.FLAGS.workdir)
    run(workdir, "tiny" if flags.FLAGS.tiny else "fashion_mnist")
    results = json.loads((workdir / "results.json").read_text())
    print(f"demo done in {time.perf_counter() - start:.0f} s: the net trained {results['step']} steps to test top-1 "
          f"{100 * results['test_top1']:.2f}%; {len(results['seconds'])} experiments wrote their pages into "
          f"{workdir}/ ({', '.join(results['seconds'])})\nopen {workdir / 'index.html'}")


if __name__ == "__main__":
    _define_flags()
    cli.run_app(main)
