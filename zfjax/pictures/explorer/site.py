"""Write the unit explorer (see `zfjax.pictures.explorer`) from a network, its `unit_scan` statistics and the images.

Every unit's row of tiles -- its top-k deconvnet projections, the image patches they see, and the guided-backprop
and saliency projections of its top image -- goes into a per-layer sprite sheet (`zfjax.pictures.sprites`), a few dozen
units a sheet. With several processes (`jax.distributed`, a workdir all of them can write) each renders its share
of the sheets; process 0 then writes the layer overviews, the data files and the page.

The site is built in a staging folder beside the live one and published by renaming it into place and then
atomically replacing ``index.html``, the only file that names the folder: a reader sees the old site or the new
one, never a mix. Older site folders are removed after the swap.
"""
from __future__ import annotations

import html
import json
import math
import os
import pathlib
import re
import secrets
import shutil
import string
import sys
from typing import Callable, Mapping, NamedTuple, Sequence

import importlib_resources
import jax
import numpy as np
from absl import logging

from zfjax import files, network
from zfjax.analyses import topk
from zfjax.pictures import plots, sprites, tiles
from zfjax.analyses.unit_scan import LayerStats
from zfjax.pictures.explorer import records

Images = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Dataset indices -> (network inputs, the images as shown in [0, 1]) of those images."""

GAP = 1  # pixels between tiles of a sheet
SHEET_HEIGHT = 2048  # a unit sheet holds as many unit rows as fit this height (at least one)
RULES = ("guided", "saliency")  # the top image's other projections, beside the deconvnet's
STATIC = ("explorer.js", "explorer.css")


class Layer(NamedTuple):
    """How one layer's tiles are laid out: `tile` (h, w) pixels, `k` top activations shown per unit, and the unit
    ranges [start, stop) of its sheets."""
    name: str
    stem: str  # the layer's file names: data/<stem>.js, sprites/<stem>_<sheet>.png
    units: int
    tile: tuple[int, int]
    k: int
    sheets: tuple[tuple[int, int], ...]

    @property
    def columns(self) -> dict[str, int]:
        """The column of each tile of a unit's row: deconvnet rank j at j, its patch at k + j, then the rules."""
        return {"deconvnet": 0, "patch": self.k, **{rule: 2 * self.k + i for i, rule in enumerate(RULES)}}


class Site(NamedTuple):
    """A published explorer: its page, its asset folder, and each layer's overview sheet."""
    index: pathlib.Path
    folder: pathlib.Path
    overviews: dict[str, pathlib.Path]


def check_workdir(workdir: str | os.PathLike) -> pathlib.Path:
    """`workdir`, created if missing; ValueError saying why when files cannot be written there."""
    workdir = pathlib.Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with files.atomic_path(workdir / ".write-test") as probe:
            probe.write_text("")
        (workdir / ".write-test").unlink()
    except OSError as e:
        raise ValueError(f"cannot write the explorer into {workdir}: {e.strerror or e}") from e
    return workdir


def plan(net: network.Network, stats: Mapping[str, LayerStats], *, k: int = 9, tile_size: int = 0) -> list[Layer]:
    """The layout of every layer (tile sizes from the layers' receptive fields, shrunk to `tile_size` if > 0)."""
    out = []
    for i, (name, s) in enumerate(stats.items()):
        tile = sprites.fitted(tiles.field(net, name).size(), tile_size)
        units = s.top.values.shape[0]
        per_sheet = max(1, SHEET_HEIGHT // (tile[0] + GAP))
        sheets = tuple((a, min(a + per_sheet, units)) for a in range(0, units, per_sheet))
        out.append(Layer(name, f"{i}_{re.sub(r'[^A-Za-z0-9_-]', '_', name)}", units, tile,
                         min(k, s.top.values.shape[1]), sheets))
    return out


def unit_rows(net: network.Network, stats: LayerStats, images: Images, layer: Layer, units: np.ndarray, *,
              tile_size: int = 0) -> np.ndarray:
    """uint8 tile rows (U, 2k + 2, h, w, C) of `units`: k deconvnet projections, their k image patches, the guided
    and saliency projections of the top image; each projection contrast-stretched on its own (0 -> grey)."""
    units = np.asarray(units, np.int64)
    top = topk.TopK(*(a[:, :layer.k] for a in stats.top))
    cut = tiles.top_tiles(net, top, units, images, layer.name)
    x, display = images(top.image[units, 0])
    positions = np.stack([top.h[units, 0], top.w[units, 0]], 1)
    others = [tiles.unit_tiles(net, layer.name, x, display, units, positions, rule=rule).projections
              for rule in RULES]
    row = np.concatenate([plots.normalize_projection(cut.projections), cut.patches,
                          *(plots.normalize_projection(p)[:, None] for p in others)], axis=1)
    return sprites.pixels(row, tile_size)


def build(net: network.Network, stats: Mapping[str, LayerStats], images: Images, workdir: str | os.PathLike, *,
          k: int = 9, class_names: Sequence[str] = (), title: str = "", about: str = "",
          tile_size: int = 0) -> Site | None:
    """Render and publish the explorer of `stats`' layers into `workdir` (module docstring); every process calls
    it with the same arguments. Returns the `Site` on process 0, None on the others."""
    lead = jax.process_index() == 0
    if lead:
        check_workdir(workdir)
    workdir = pathlib.Path(workdir)
    layers = plan(net, stats, k=k, tile_size=tile_size)
    staging = workdir / f".site-{_shared_token()}.tmp"
    try:
        _render_share(net, stats, images, layers, staging, tile_size)
        _barrier("explorer sheets written")
        return _publish(net, stats, layers, staging, workdir, class_names, title, about) if lead else None
    finally:
        if lead:
            shutil.rmtree(staging, ignore_errors=True)


def _shared_token() -> str:
    """A random name all processes agree on (process 0's)."""
    token = np.uint32(secrets.randbits(32))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        token = np.uint32(multihost_utils.broadcast_one_to_all(token))
    return f"{int(token):08x}"


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def _render_share(net, stats, images, layers: Sequence[Layer], staging: pathlib.Path, tile_size: int) -> None:
    """Render this process's sheets (every process_count-th of all layers' sheets) into ``staging/sprites``."""
    from tqdm import tqdm
    jobs = [(layer, j, span) for layer in layers for j, span in enumerate(layer.sheets)]
    mine = jobs[jax.process_index()::jax.process_count()]
    logging.info("explorer: process %d renders %d of the %d sheets", jax.process_index(), len(mine), len(jobs))
    for layer, j, (start, stop) in tqdm(mine, desc="explorer sheets", unit="sheet", file=sys.stderr,
                                        disable=jax.process_index() != 0, mininterval=1.0):
        rows = unit_rows(net, stats[layer.name], images, layer, np.arange(start, stop), tile_size=tile_size)
        sprites.save(staging / "sprites" / f"{layer.stem}_{j}.png", sprites.sheet(rows, GAP))


def _publish(net, stats, layers: Sequence[Layer], staging: pathlib.Path, workdir: pathlib.Path,
             class_names: Sequence[str], title: str, about: str) -> Site:
    """Overviews, data files and assets into `staging`; rename it to a live folder; swap ``index.html``."""
    overviews = {}
    for layer in layers:
        overview = _overview(layer, staging)
        overviews[layer.name] = overview
        units = records.units(stats[layer.name], _windows(net, stats[layer.name], layer), layer.k)
        for j, (start, stop) in enumerate(layer.sheets):
            for u in range(start, stop):
                units[u].update(sheet=j, row=u - start)
        _write_data(staging / "data" / f"{layer.stem}.js", "layer", _layer_data(layer, units, staging, overview))
    first = next(iter(stats.values()))
    n_classes = max([len(class_names)] + [int(s.labels.max()) + 1 for s in stats.values()])
    names = [class_names[c] if c < len(class_names) else f"class {c}" for c in range(n_classes)]
    _write_data(staging / "data" / "site.js", "site", {
        "title": title or f"Unit explorer: {net.name}", "about": about, "images": first.images, "classes": names,
        "k": max(layer.k for layer in layers), "histogram_k": int(first.top.values.shape[1]),
        "layers": [{"name": layer.name, "units": layer.units, "data": f"data/{layer.stem}.js"} for layer in layers]})
    for name in STATIC:
        files.write_text(staging / name, _static(name))
    folder = workdir / ("site-" + staging.name[len(".site-"):-len(".tmp")])
    staging.rename(folder)
    template = string.Template(_static("index.html"))
    index = files.write_text(workdir / "index.html", template.substitute(
        site=folder.name, title=html.escape(title or f"Unit explorer: {net.name}"), about=html.escape(about)))
    for old in workdir.glob("site-*"):
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    logging.info("explorer: %d units of %d layers in %s", sum(layer.units for layer in layers), len(layers), index)
    return Site(index, folder, {name: folder / path.relative_to(staging) for name, path in overviews.items()})


def _windows(net: network.Network, stats: LayerStats, layer: Layer) -> np.ndarray:
    """(C, k, 4) the tiles of every unit's top-k activations, as `tiles.top_tiles` cuts them."""
    positions = np.stack([stats.top.h[:, :layer.k].ravel(), stats.top.w[:, :layer.k].ravel()], 1)
    cut = tiles.windows(tiles.field(net, layer.name), positions, tuple(net.input_shape[:2]))
    return cut.reshape(layer.units, layer.k, 4)


def _overview(layer: Layer, staging: pathlib.Path) -> pathlib.Path:
    """A sheet of every unit's strongest projection, unit u at (u // cols, u % cols), read from the unit sheets."""
    cut = []
    for j, (start, stop) in enumerate(layer.sheets):
        sheet = sprites.load(staging / "sprites" / f"{layer.stem}_{j}.png")
        cut += [sprites.tile(sheet, u - start, 0, layer.tile, GAP) for u in range(start, stop)]
    cols = math.ceil(math.sqrt(layer.units))
    grid = np.full((math.ceil(layer.units / cols) * cols, *cut[0].shape), 255, np.uint8)
    grid[:layer.units] = cut
    path = staging / "sprites" / f"{layer.stem}_overview.png"
    sprites.save(path, sprites.sheet(grid.reshape(-1, cols, *cut[0].shape), GAP))
    return path


def _sheet_entry(file: str, rows: int, columns: int, tile: tuple[int, int]) -> dict:
    """A sheet's file (relative to the site folder) and pixel size, `rows` x `columns` tiles of `tile` (h, w)."""
    return {"file": file, "width": columns * (tile[1] + GAP) - GAP, "height": rows * (tile[0] + GAP) - GAP}


def _layer_data(layer: Layer, units: list[dict], staging: pathlib.Path, overview: pathlib.Path) -> dict:
    """A layer's data file: tile geometry, sheets, the overview's layout and one record per unit."""
    columns = math.ceil(math.sqrt(layer.units))
    return {"name": layer.name, "tile": list(layer.tile), "gap": GAP, "k": layer.k, "columns": layer.columns,
            "sheets": [_sheet_entry(f"sprites/{layer.stem}_{j}.png", stop - start, 2 * layer.k + len(RULES),
                                    layer.tile) for j, (start, stop) in enumerate(layer.sheets)],
            "overview": {**_sheet_entry(overview.relative_to(staging).as_posix(), math.ceil(layer.units / columns),
                                        columns, layer.tile), "columns": columns},
            "units": units}


def _write_data(path: pathlib.Path, kind: str, data: dict) -> None:
    """A data file the page loads with a script tag (pages opened from disk may not fetch JSON)."""
    files.write_text(path, f"EXPLORER.{kind}({json.dumps(data, separators=(',', ':'))});\n")


def read_data(path: str | os.PathLike) -> dict:
    """The object a data file written for the page holds (inverse of what `build` writes)."""
    text = pathlib.Path(path).read_text()
    match = re.fullmatch(r"EXPLORER\.(site|layer)\((.*)\);\s*", text, re.S)
    if not match:
        raise ValueError(f"{path} is not an explorer data file")
    return json.loads(match.group(2))


def _static(name: str) -> str:
    return (importlib_resources.files("zfjax.pictures.explorer") / "static" / name).read_text()


__all__ = ["Images", "Layer", "Site", "check_workdir", "plan", "unit_rows", "build", "read_data"]
