"""Import and export of trained weights in torch's layouts: `.safetensors` (no torch needed) or a torch `.pth`.

Two key layouts are understood:

- ``"torchvision"``: torchvision's AlexNet state dict (``features.0.weight`` ... ``classifier.6.bias``), for the
  ``"alexnet_torchvision"`` arch. With it every visualization runs on the ImageNet AlexNet users already have.
- ``"named"``: one entry per zfjax layer, ``conv1.weight`` / ``conv1.bias`` ... ``fc8.weight``, in torch's
  conventions; works for every arch (a torch port of ZFNet with modules named after the paper's layers).

Torch stores conv filters OIHW and linear weights (out, in), and flattens the last pooled map in NCHW order; zfjax
uses HWIO, (in, out) and NHWC flattening, so the first fc layer's rows are permuted on the way in and out.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from zfjax import files
from zfjax.network import models

TORCHVISION_ALEXNET = {
    "conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
    "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}
LAYOUTS = ("torchvision", "named")


def _keys(arch: models.Arch, layout: str) -> dict[str, str]:
    """zfjax layer name -> torch module prefix."""
    names = list(models.param_shapes(arch))
    if layout == "named":
        return {n: n for n in names}
    if layout == "torchvision":
        if arch.name != "alexnet_torchvision":
            raise ValueError(f"the torchvision layout is torchvision's AlexNet: use arch 'alexnet_torchvision', "
                             f"not {arch.name!r}")
        return {n: TORCHVISION_ALEXNET[n] for n in names}
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


def _first_fc(arch: models.Arch) -> tuple[str, tuple[int, int, int]]:
    """The first fc layer's name and the (H, W, C) map it flattens."""
    last = arch.convs[-1]
    return (arch.fcs[0].name if arch.fcs else "fc8"), arch.shapes()[last.output_name]


def guess_layout(state: dict[str, np.ndarray]) -> str:
    """The key layout of a state dict: ``"torchvision"`` when it has torchvision's ``features.0.weight``."""
    return "torchvision" if "features.0.weight" in state else "named"


def from_torch(state: dict[str, np.ndarray], arch: models.Arch, layout: str | None = None) -> models.Params:
    """Convert a torch-layout state dict (numpy arrays) to zfjax params; `layout` None guesses it from the keys."""
    layout = layout or guess_layout(state)
    fc_first, (h, w, c) = _first_fc(arch)
    params: models.Params = {}
    for name, prefix in _keys(arch, layout).items():
        try:
            weight, bias = np.asarray(state[prefix + ".weight"]), np.asarray(state[prefix + ".bias"])
        except KeyError as e:
            raise ValueError(f"the weights have no {e.args[0]!r} (needed for {name} of {arch.name}, layout "
                             f"{layout!r}); they have {sorted(state)[:12]}...") from None
        if weight.ndim == 4:
            weight = weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif name == fc_first and weight.ndim == 2 and weight.shape[1] == h * w * c:
            weight = weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)  # NCHW rows -> NHWC
        else:
            weight = weight.T
        params[name] = {"w": weight.astype(np.float32), "b": bias.astype(np.float32)}
    models.check_params(arch, params)
    return params


def to_torch(params: models.Params, arch: models.Arch, layout: str = "named") -> dict[str, np.ndarray]:
    """The inverse of `from_torch`: zfjax params -> torch-layout state dict of float32 numpy arrays."""
    models.check_params(arch, params)
    fc_first, (h, w, c) = _first_fc(arch)
    state = {}
    for name, prefix in _keys(arch, layout).items():
        weight = np.asarray(params[name]["w"], np.float32)
        if weight.ndim == 4:
            weight = weight.transpose(3, 2, 0, 1)
        elif name == fc_first:
            weight = weight.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, h * w * c)
        else:
            weight = weight.T
        state[prefix + ".weight"] = np.ascontiguousarray(weight)
        state[prefix + ".bias"] = np.asarray(params[name]["b"], np.float32)
    return state


def load(path: str | os.PathLike, arch: models.Arch, layout: str | None = None) -> models.Params:
    """Load `.safetensors` (numpy API, no torch) or `.pth`/`.pt` (needs torch) weights as zfjax params."""
    return from_torch(read(path), arch, layout)


def read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a `.safetensors` or `.pth`/`.pt` file as numpy arrays, in the file's own layout.

    No file: FileNotFoundError; a file that does not decode (truncated, not weights): ValueError naming it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"unknown weights format {path.suffix!r} for {path}: use .safetensors, .pth or .pt")
    try:
        return _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors and torch raise their own types for a damaged file
        raise ValueError(f"cannot read weights {path} ({type(e).__name__}: {e}): is the file complete?") from None


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    return load_file(str(path))


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {path.name} needs torch (pip install torch), or convert it to .safetensors") \
            from None
    raw = torch.load(str(path), map_location="cpu", weights_only=True)
    raw = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    return {k: v.detach().float().numpy() for k, v in raw.items() if hasattr(v, "detach")}


def save(params: models.Params, path: str | os.PathLike, arch: models.Arch, layout: str = "named") -> None:
    """Write params as `.safetensors` in a torch layout, atomically (`files.atomic_path`); arch name in metadata."""
    from safetensors.numpy import save_file
    with files.atomic_path(path) as tmp:
        save_file(to_torch(params, arch, layout), str(tmp), metadata={"arch": arch.name, "layout": layout})
