"""Feature extraction for the transfer and per-layer experiments (Tables 4-7): one jit-compiled, batched,
data-sharded function, streaming to disk in `.npy` chunks so that large datasets fit in memory limits.

Maps (``convK``/``poolK``) are reduced to a fixed size before they are stored: max pooling into a ``grid x grid``
layout of cells, then flattening (NHWC order): ``grid * grid * C`` numbers per image whatever the input size. The paper
does not say how it fed layers 1-5 to its classifiers; without a reduction layer 1 alone has 290k dimensions per
image. ``grid=None`` keeps the full flattened map. fc layers (``fc6``, ``fc7``: post-ReLU) are kept as they are.
"""
from __future__ import annotations

import functools
import os
import pathlib
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from zfjax import files
from zfjax.data import pipeline
from zfjax.network import models

Array = jax.Array


def grid_max(x: Array, grid: int) -> Array:
    """Max over a `grid x grid` layout of (nearly equal, covering) cells of an NHWC map -> (N, grid*grid*C)."""
    n, h, w, c = x.shape
    if grid > min(h, w):
        raise ValueError(f"grid {grid} is finer than the {h}x{w} map")
    cells = []
    for i in range(grid):
        for j in range(grid):
            y0, y1 = (i * h) // grid, -(-((i + 1) * h) // grid)
            x0, x1 = (j * w) // grid, -(-((j + 1) * w) // grid)
            cells.append(jnp.max(x[:, y0:y1, x0:x1, :], axis=(1, 2)))
    return jnp.stack(cells, axis=1).reshape(n, -1)


@functools.partial(jax.jit, static_argnames=("arch", "layer", "grid"))
def layer_features(arch: models.Arch, params: models.Params, x: Array, layer: str, grid: int | None = 4) -> Array:
    """One batch's features of `layer` (see the module docstring for the reduction of maps)."""
    act = models.apply(arch, params, x, upto=layer).acts[layer]
    if act.ndim == 2:
        return act
    return act.reshape(act.shape[0], -1) if grid is None else grid_max(act, grid)


def _sharded(x: np.ndarray, mesh: Mesh) -> Array:
    """Place a batch sharded over the mesh's data axis (padding its length to a multiple of the devices)."""
    pad = (-len(x)) % mesh.devices.size
    if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    return jax.device_put(x, NamedSharding(mesh, P("data")))


def extract(arch: models.Arch, params: models.Params, batches: Iterable[np.ndarray], layer: str, *,
            grid: int | None = 4, out_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Features of `layer` for every image of `batches` (an iterable of float NHWC arrays), in order.

    With `out_dir`, batch i is written to ``out_dir/chunk_{i:06d}.npy`` atomically as soon as it is computed and an
    existing chunk is read back instead of recomputed, so a killed extraction resumes where it stopped.
    """
    models.check_layer(arch, layer)
    models.check_params(arch, params)
    mesh = pipeline.data_mesh()
    out_dir = pathlib.Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    chunks = []
    for i, batch in enumerate(batches):
        path = out_dir / f"chunk_{i:06d}.npy" if out_dir is not None else None
        if path is not None and path.exists():
            chunks.append(np.load(path))
            continue
        models.check_images(arch, np.asarray(batch), upto=layer)
        feats = np.asarray(layer_features(arch, params, _sharded(np.asarray(batch, np.float32), mesh), layer,
                                          grid))[:len(batch)]
        if path is not None:
            with files.atomic_path(path) as tmp:
                np.save(tmp, feats)
        chunks.append(feats)
    if not chunks:
        raise ValueError("no batches to extract features from")
    return np.concatenate(chunks)
