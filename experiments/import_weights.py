"""Import trained weights (torch layouts) into a workdir, so every experiment that reads ``--workdir`` runs on them:

    python -m experiments.import_weights --weights=alexnet.safetensors --workdir=runs/alexnet_tv
    python -m experiments.import_weights --weights=alexnet-owt-7be5be79.pth --workdir=runs/alexnet_tv  # needs torch

``--arch`` (default ``alexnet_torchvision``) names the zfjax architecture, ``--layout`` the key layout
(``torchvision`` or ``named``; guessed from the keys when left out, see `zfjax.network.weights`). The parameters are written
as checkpoint ``--step`` (default 0) of the empty workdir; `zfjax.training.checkpoints.latest(workdir)` returns them. With
``--normalization`` (default for torchvision's layout: torchvision's ImageNet mean and std) the workdir also records
the network, so `zfjax.training.trained.load_net(workdir)` and ``--config.checkpoint=<workdir>`` use it with no config.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import os
import pathlib

from absl import app, flags

from experiments import cli
from zfjax.network import models, weights
from zfjax.training import checkpoints, trained

def import_weights(path: str | os.PathLike, workdir: str | os.PathLike, arch_name: str = "alexnet_torchvision", *,
                   layout: str | None = None, num_classes: int = 0, step: int = 0, normalization: str = "",
                   pixel_scale: float = 1.0) -> pathlib.Path:
    """Load `path` with `zfjax.network.weights.load` for `arch_name` and write it as checkpoint `step` of `workdir`.

    With a `normalization` (`zfjax.training.trained.normalization`: "torchvision" or per-channel mean pixel values, those
    with `pixel_scale`), the workdir also records the network, so `zfjax.training.trained.load_net` reads it with no
    config; "" means "torchvision" for torchvision's layout, and no record for other layouts.
    """
    arch = models.get(arch_name, **({"num_classes": num_classes} if num_classes else {}))
    state = weights.read(path)
    layout = layout or weights.guess_layout(state)
    params = weights.from_torch(state, arch, layout)
    normalization = normalization or ("torchvision" if layout == "torchvision" else "")
    record = checkpoints.NetworkRecord(arch, *trained.normalization(normalization, arch.input_shape[2], pixel_scale),
                                       "") if normalization else None
    meta = {"arch": arch.name, "num_classes": arch.num_classes, "input_shape": list(arch.input_shape),
            "imported_from": str(pathlib.Path(path).absolute()), "layout": layout, "normalization": normalization}
    out = checkpoints.save_params(workdir, params, meta, step)
    if record is not None:
        checkpoints.save_network(workdir, record)
    return out


def _define_flags() -> None:
    """Flags exist only when this module runs as a script, so tests can import several experiment modules."""
    flags.DEFINE_string("weights", None, "A .safetensors, .pth or .pt file of weights in a torch layout.")
    flags.DEFINE_string("workdir", None, "An empty (or new) directory to write the checkpoint into.")
    flags.DEFINE_enum("arch", "alexnet_torchvision", sorted(models.ARCHS), "The zfjax architecture.")
    flags.DEFINE_enum("layout", None, list(weights.LAYOUTS), "Key layout; guessed from the keys if unset.")
    flags.DEFINE_integer("num_classes", 0, "Classes of fc8 (0 = the architecture's default).")
    flags.DEFINE_integer("step", 0, "Checkpoint step to write the parameters as.")
    flags.DEFINE_string("normalization", "", "Inputs the weights expect: 'torchvision', or per-channel mean pixel "
                        "values '123.7,116.3,103.5' (with --pixel_scale); '' = torchvision for torchvision's layout.")
    flags.DEFINE_float("pixel_scale", 1.0, "Scale of (pixel - mean) for a --normalization given as mean values.")
    flags.mark_flags_as_required(["weights", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    out = import_weights(f.weights, f.workdir, f.arch, layout=f.layout, num_classes=f.num_classes, step=f.step,
                         normalization=f.normalization, pixel_scale=f.pixel_scale)
    recorded = checkpoints.read_network(f.workdir) is not None
    print(f"wrote {f.arch} parameters from {f.weights} to {out}" + (
        f" and the network record {pathlib.Path(f.workdir) / checkpoints.NETWORK_FILE}" if recorded else
        "; no network record (--config.checkpoint needs one: import with --normalization)"))


if __name__ == "__main__":
    _define_flags()
    cli.run_app(main)
