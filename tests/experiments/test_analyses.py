"""The invariance, occlusion and correspondence experiments end to end on the tiny net (random weights) and a few
Fashion-MNIST test images: each writes its figures, results.json and an index.html that shows them."""
from zfjax.pictures import pages
import html
import json

import numpy as np
import pytest

from experiments import correspondence, demo, invariance, occlusion
from experiments.configs import correspondence as correspondence_config
from experiments.configs import invariance as invariance_config
from experiments.configs import occlusion as occlusion_config

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                                reason="needs the embedded Fashion-MNIST files")


def tiny(module):
    c = module.get_config("tiny")
    c.random_init = True
    return c


def check_report(workdir, figures):
    index = (workdir / "index.html").read_text()
    for f in figures:
        assert (workdir / f.file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"src='{f.file}'" in index and f.caption.split(";")[0][:40] in index
    return json.loads((workdir / "results.json").read_text())


def test_invariance(tmp_path):
    c = tiny(invariance_config)
    c.translations, c.scales, c.rotations = (-2, 0, 3), (1.0, 1.5), (0, 90, 180)
    results = check_report(tmp_path, invariance.run(c, tmp_path))
    assert results["layers"] == ["pool1", "fc7"]
    sweep = results["sweeps"]["translate"]
    assert np.asarray(sweep["distance"]["fc7"]).shape == (5, 3)
    pool1 = np.asarray(sweep["distance"]["pool1"])
    assert np.all(pool1[:, 1] <= 1e-4 * pool1.max()) and np.all(pool1[:, [0, 2]] > 0)  # 0 is the identity
    assert np.all((np.asarray(sweep["prob_true"]) >= 0) & (np.asarray(sweep["prob_true"]) <= 1))


def test_occlusion(tmp_path):
    c = tiny(occlusion_config)
    c.indices, c.stride = (0, 1), 4
    results = check_report(tmp_path, occlusion.run(c, tmp_path))
    first = results["images"][0]
    assert np.asarray(first["prob_true"]).shape == (6, 6)  # (28 - 8) // 4 + 1 positions per axis
    assert len(first["projected_at"]) == c.projections
    assert "The weights are random (untrained)" in (tmp_path / "index.html").read_text()


def test_correspondence(tmp_path):
    c = tiny(correspondence_config)
    c.random_repeats = 2
    results = check_report(tmp_path, correspondence.run(c, tmp_path))
    rows = results["table"]["rows"]
    assert [r[0] for r in rows] == sorted(c.parts.keys()) + ["random"]
    for name, s in results["scores"].items():
        assert 0 <= s["fc7"]["delta"] <= 1 and 0 <= s["pool5"]["delta"] <= 1
    assert "Table 1" in (tmp_path / "index.html").read_text()
    assert (tmp_path / "results.md").read_text().startswith("| part |")


def test_demo_page_shows_the_correspondence_table(tmp_path):
    c = tiny(correspondence_config)
    c.random_repeats = 2
    correspondence.run(c, tmp_path / "correspondence")
    table = json.loads((tmp_path / "correspondence" / "results.json").read_text())["table"]
    [(caption, header, rows)] = demo.tables(tmp_path, ["correspondence", "occlusion"])  # occlusion: no table
    assert (header, rows) == (table["header"], table["rows"]) and "correspondence/index.html" in caption
    pages.write_index(tmp_path, "demo", [], tables=demo.tables(tmp_path, ["correspondence"]))
    page = (tmp_path / "index.html").read_text()
    assert all(f"<td>{html.escape(str(cell))}</td>" in page for row in rows for cell in row)


def test_bad_config(tmp_path):
    c = tiny(occlusion_config)
    c.projections = 1
    with pytest.raises(ValueError, match="projections"):
        occlusion.run(c, tmp_path)
    c = tiny(invariance_config)
    c.images = "nowhere:x"
    with pytest.raises(ValueError, match="unknown images"):
        invariance.run(c, tmp_path)
