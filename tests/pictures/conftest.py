"""Fixtures of the explorer tests: reading a built explorer back (its data files and sprite sheets)."""
import pathlib
import re

import numpy as np
import pytest

from zfjax.pictures import explorer, sprites


def _site(workdir: pathlib.Path) -> tuple[pathlib.Path, dict, dict]:
    folders = re.findall(r'src="(site-[0-9a-f]+)/explorer.js"', (workdir / "index.html").read_text())
    assert len(folders) == 1
    folder = workdir / folders[0]
    site = explorer.read_data(folder / "data" / "site.js")
    return folder, site, {layer["name"]: explorer.read_data(folder / layer["data"]) for layer in site["layers"]}


@pytest.fixture(scope="session")
def explorer_site():
    """``explorer_site(workdir)``: (asset folder, site data, layer name -> layer data) of the explorer that
    ``workdir/index.html`` names."""
    return _site


def _sheet_tile(folder: pathlib.Path, data: dict, record: dict, column: int) -> np.ndarray:
    sheet = sprites.load(folder / data["sheets"][record["sheet"]]["file"])
    return sprites.tile(sheet, record["row"], column, tuple(data["tile"]), data["gap"])


@pytest.fixture(scope="session")
def sheet_tile():
    """``sheet_tile(folder, layer_data, unit_record, column)``: one tile of a unit's row of its sprite sheet."""
    return _sheet_tile


def _column(data: dict, kind: str, rank: int) -> int:
    return data["columns"]["deconvnet" if kind == "deconvnet" else kind] + (rank if kind in ("deconvnet", "patch")
                                                                            else 0)


@pytest.fixture(scope="session")
def tile_column():
    """``tile_column(layer_data, kind, rank)``: the sheet column of a unit's `kind` tile of the given rank."""
    return _column
