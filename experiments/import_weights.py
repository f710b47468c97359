"""Import trained weights (torch layouts) into a workdir, so every experiment that reads ``--workdir`` runs on them:

    python -m experiments.import_weights --weights=alexnet.safetensors --workdir=runs/alexnet_tv
    python -m experiments.import_weights --weights=alexnet-owt-7be5be79.pth --workdir=runs/alexnet_tv  # needs torch

``--arch`` (default ``alexnet_torchvision``) names the zfjax architecture, ``--layout`` the key layout
(``torchvision`` or ``named``; guessed from the keys when left out, see `zfjax.weights`). The parameters are written
as checkpoint ``--step`` (default 0) of the empty workdir; `zfjax.checkpoints.latest(workdir)` returns them.
"""
from __future__ import annotations

import zfjax  # noqa: F401  (first: sets fast XLA:CPU flags before JAX starts)

import os
import pathlib

from absl import app, flags

from zfjax import checkpoints, models, weights

def import_weights(path: str | os.PathLike, workdir: str | os.PathLike, arch_name: str = "alexnet_torchvision", *,
                   layout: str | None = None, num_classes: int = 0, step: int = 0) -> pathlib.Path:
    """Load `path` with `zfjax.weights.load` for `arch_name` and write it as checkpoint `step` of `workdir`."""
    arch = models.get(arch_name, **({"num_classes": num_classes} if num_classes else {}))
    params = weights.load(path, arch, layout)
    meta = {"arch": arch.name, "num_classes": arch.num_classes, "input_shape": list(arch.input_shape),
            "imported_from": str(pathlib.Path(path).absolute()), "layout": layout or "guessed"}
    return checkpoints.save_params(workdir, params, meta, step)


def _define_flags() -> None:
    """Flags exist only when this module runs as a script, so tests can import several experiment modules."""
    flags.DEFINE_string("weights", None, "A .safetensors, .pth or .pt file of weights in a torch layout.")
    flags.DEFINE_string("workdir", None, "An empty (or new) directory to write the checkpoint into.")
    flags.DEFINE_enum("arch", "alexnet_torchvision", sorted(models.ARCHS), "The zfjax architecture.")
    flags.DEFINE_enum("layout", None, list(weights.LAYOUTS), "Key layout; guessed from the keys if unset.")
    flags.DEFINE_integer("num_classes", 0, "Classes of fc8 (0 = the architecture's default).")
    flags.DEFINE_integer("step", 0, "Checkpoint step to write the parameters as.")
    flags.mark_flags_as_required(["weights", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    out = import_weights(f.weights, f.workdir, f.arch, layout=f.layout, num_classes=f.num_classes, step=f.step)
    print(f"wrote {f.arch} parameters from {f.weights} to {out}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
