"""Table 3: ablations. Trains every variant of one base config (layers removed or resized, a different first
layer), each into ``<workdir>/<variant>/`` (resumable), and tabulates error % of train top-1, val top-1, val top-5.

    python -m experiments.ablations --config=experiments/configs/ablations.py:fmnist --workdir=runs/ablations

Writes ``results.json``, ``results.md``, ``index.html`` and ``errors.png``.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import logging
import pathlib
import time
from typing import Any


from experiments import cli
from experiments.configs import ablation, default
from zfjax import files
from zfjax.data import pipeline
from zfjax.data import load as load_data
from zfjax.network import models
from zfjax.pictures import pages, plots
from zfjax.training import ablations, checkpoints, train

# The paper's Table 3 rows as the paper gives them (error %: train top-1, val top-1, val top-5). The base row is the
# Fig. 3 ZFNet; the removal rows are its replication of Krizhevsky et al. with those layers removed.
PAPER = {"base": ("33.1", "38.4", "16.5"), "no_fc67": ("27.4", "44.8", "22.4"),
         "no_conv34_fc67": ("71.1", "71.3", "50.1")}


def variants(config: Any) -> dict[str, ablations.Variant]:
    """Name -> (remove, overrides) for every variant of the config, widths scaled to the base net."""
    known = dict(ablation.VARIANTS)
    known.update({k: (tuple(v["remove"]), v["overrides"]) for k, v in config.extra_variants.to_dict().items()})
    ablations.check_variants(config.variants, known)
    known["base"] = ((), {})
    if not config.scale_from or config.scale_from == config.base.model:
        return {n: known[n] for n in config.variants}
    base_arch = models.get(config.base.model, **config.base.model_overrides.to_dict())
    reference = models.get(config.scale_from)
    return {n: (known[n][0], ablations.scale_overrides(known[n][1], reference, base_arch)
                if n not in config.extra_variants else known[n][1]) for n in config.variants}


def train_variant(config: Any, workdir: pathlib.Path, train_eval_subset: int) -> dict[str, float]:
    """Train one variant (or resume/reuse it), then evaluate its final params on val and on training images."""
    start = time.perf_counter()
    default.check_fields(config)
    train.train_and_evaluate(config, workdir)
    step, params = checkpoints.latest(workdir)
    data = load_data(config)
    arch = train.build_arch(config, data)
    mesh = pipeline.data_mesh()
    _, eval_fn = train.compile_steps(config, arch, None, mesh)  # only the eval step is used
    val = train.evaluate(eval_fn, params, data, config, mesh)
    train_images = data._replace(eval=pipeline.Subset(data.train, min(train_eval_subset, len(data.train))))
    tr = train.evaluate(eval_fn, params, train_images, config, mesh)
    return {"step": step, "params": models.count_params(arch), "train_top1": tr["eval_top1"],
            "val_top1": val["eval_top1"], "val_top5": val["eval_top5"], "seconds": time.perf_counter() - start}


def figure(names: list[str], results: dict[str, dict[str, float]]):
    """Grouped bars of the three error rates per variant."""
    keys = (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5"))
    return plots.grouped_bars(names, {label: [100 * (1 - results[n][key]) for n in names] for key, label in keys},
                            ylabel="error (%)")


def run(config: Any, workdir: pathlib.Path) -> dict[str, Any]:
    """Train and evaluate every variant, then write the table (see the module docstring)."""
    specs = variants(config)
    results = {}
    for name, spec in specs.items():
        logging.info("variant %s: remove %s, overrides %s", name, spec[0], spec[1])
        results[name] = train_variant(ablations.variant_config(config.base, spec), workdir / name,
                                      config.train_eval_subset)
        logging.info("variant %s: %s", name, results[name])
    names = list(specs)
    header = ["variant", "removed", "resized", "params", "ours: train top-1", "ours: val top-1", "ours: val top-5",
              "paper: train top-1", "paper: val top-1", "paper: val top-5"]
    rows = [ablations.error_row(n, results[n]["train_top1"], results[n]["val_top1"], results[n]["val_top5"])
            for n in names]
    rows = [[r[0], ",".join(specs[n][0]) or "—", _resized(specs[n][1]), f"{results[n]['params']:,}"] + r[1:]
            + list(PAPER.get(n, ("—",) * 3)) for n, r in zip(names, rows)]
    out = {"variants": {n: {"remove": list(specs[n][0]), "overrides": specs[n][1], **results[n]} for n in names},
           "table": {"header": header, "rows": rows}, "config": config.to_dict()}
    files.write_json(workdir / "results.json", out)
    files.write_text(workdir / "results.md", pages.markdown_table(header, rows) + "\n")
    plots.save_figure(figure(names, results), workdir / "errors.png")
    base = config.base
    pages.write_index(workdir, "Ablations (Table 3)", [
        pages.Figure("errors.png", "Error per variant", "Train top-1 (training images, no dropout), val top-1 and "
                      "val top-5 error of each variant's final parameters.")],
        intro=f"Base: {base.model} on {base.dataset} ({base.train_subset or 'all'} training images, "
              f"{base.num_epochs} epochs per variant). Widths scaled from {config.scale_from or 'as written'}.",
        tables=[("Error % ('ours' measured here; 'paper' from the paper's Table 3, ImageNet, where it reports "
                 "that variant)", header, rows)])
    return out


def _resized(overrides: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"{layer} " + ",".join(f"{k}={v}" for k, v in fields.items())
                     for layer, fields in overrides.items()) or "—"


if __name__ == "__main__":
    cli.main(run)
