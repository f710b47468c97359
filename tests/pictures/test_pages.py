"""Atomic outputs and the index.html writer."""
from zfjax import files
from zfjax.pictures import pages, plots
import json
import os

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402



def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "results.json"
    files.write_json(target, {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    with pytest.raises(TypeError):
        files.write_json(target, {"bad": object()})
    assert json.loads(target.read_text())["a"] == 1.5  # the old content survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temp files left
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # readable like any file, not mkstemp's 0600


def test_index_shows_figures_and_tables(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = plots.save_figure(fig, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = pages.write_index(tmp_path, "Demo <1>", [pages.Figure("curve.png", "Curve", "a & b")],
                               tables=[("Errors", ["model", "top-1"], [["zfnet", 38.4]])])
    text = index.read_text()
    assert "<img src='curve.png'" in text and "a &amp; b" in text and "Demo &lt;1&gt;" in text
    assert "<td>38.4</td>" in text
    assert pages.markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
