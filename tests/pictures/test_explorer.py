"""The unit explorer end to end: `make demo`'s route (the demo on its tiny preset trains the net, then builds the
explorer), its data against topk.scan and the activations, its sprite sheets against deconv.project of the same
units, the page in headless Chromium, atomic re-runs and bad input.

Screenshots of the page are kept in ``artifacts/explorer/`` (git-ignored) and in the test's tmp dir.
"""
import collections
import json
import re

import jax
import numpy as np
import pytest

from tests.pictures import browser
from experiments import demo, explore, subject
from experiments.configs import explore as explore_config
from zfjax import deconv
from zfjax.analyses import topk
from zfjax.data import pipeline
from zfjax.network import models
from zfjax.pictures import plots, sprites, tiles
from zfjax.network.receptive_field import receptive_field

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
_project = jax.jit(deconv.project, static_argnames=("arch", "layer", "rule"))  # uncropped; unit traced


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The demo (tiny preset) with only the explorer: its workdir, the net and the 40 images it scanned."""
    workdir = tmp_path_factory.mktemp("demo")
    demo.run(workdir, "tiny", experiments=("explore",))
    config = demo.experiment_config("explore", "tiny", demo.train_config("tiny"), workdir / "train")
    studied = subject.load(config)
    source = subject.subset(studied.data.eval, config.num_images)
    x, display = subject.images(studied, source)(np.arange(len(source)))
    labels = np.array([source[i]["label"] for i in range(len(source))])
    return {"dir": workdir / "explore", "demo": workdir, "config": config, "net": studied.built,
            "subject": studied, "x": x,
            "display": display, "labels": labels}


def _reference_tiles(b: dict, layer: str, record: dict, reference_tile) -> dict[tuple[str, int], np.ndarray]:
    """(kind, rank) -> the unit's tile as the page should show it, from deconv.project of the same unit:
    projections cut to the window, stretched around 0, 8-bit; patches the image cut (grey outside)."""
    arch, params = b["net"].arch, b["net"].params
    out = {}
    for j, t in enumerate(record["top"]):
        image = b["x"][t["image"]][None]
        rules = ("deconvnet", "guided", "saliency") if j == 0 else ("deconvnet",)
        for rule in rules:
            p = np.asarray(_project(arch, params, image, layer, record["unit"], position=np.array([t["h"], t["w"]]),
                                    rule=rule))[0]
            out[(rule, j)] = sprites.pixels(plots.normalize_projection(reference_tile(p, t["window"], 0.0)))
        out[("patch", j)] = sprites.pixels(reference_tile(b["display"][t["image"]], t["window"], 0.5))
    return out


def test_demo_links_the_explorer_of_every_conv_unit(explorer_site, built):
    index = (built["demo"] / "index.html").read_text()
    assert "<a href='explore/index.html'><img src='explore/preview.png'" in index
    assert (built["dir"] / "preview.png").stat().st_size > 1000
    _, site, layers = explorer_site(built["dir"])
    arch = built["net"].arch
    assert [layer["name"] for layer in site["layers"]] == list(LAYERS)
    assert {n: len(d["units"]) for n, d in layers.items()} == {n: arch.shapes()[n][2] for n in LAYERS}
    assert site["images"] == 40 and site["classes"][9] == "Ankle boot"
    results = json.loads((built["dir"] / "results.json").read_text())
    assert sum(r["units"] for r in results["layers"].values()) == 72


def test_unit_data_equals_topk_scan_and_the_activations(explorer_site, built):
    """Every unit's top 9, labels, statistics and class histogram, against topk.scan and numpy."""
    arch, params, x, labels = built["net"].arch, built["net"].params, built["x"], built["labels"]
    _, site, layers = explorer_site(built["dir"])
    acts = models.apply(arch, params, x).acts
    for layer in LAYERS:
        top = topk.scan(arch, params, [x[:16], x[16:]], layer=layer, k=site["histogram_k"])
        a = np.asarray(acts[layer], np.float64)
        tile_size = tiles.field(built["subject"].net, layer).size()
        for c, record in enumerate(layers[layer]["units"]):
            assert record["unit"] == c and len(record["top"]) == 9
            assert [t["image"] for t in record["top"]] == top.image[c, :9].tolist()
            assert [(t["h"], t["w"]) for t in record["top"]] == list(zip(top.h[c, :9].tolist(), top.w[c, :9].tolist()))
            np.testing.assert_allclose([t["value"] for t in record["top"]], top.values[c, :9], rtol=1e-5, atol=1e-6)
            assert [t["label"] for t in record["top"]] == labels[top.image[c, :9]].tolist()
            for t in record["top"]:  # the tile holds the unit's receptive field and has the layer's tile size
                y0, y1, x0, x1 = t["window"]
                f = receptive_field(arch, layer, (t["h"], t["w"]))
                assert y0 <= f[0] and f[1] <= y1 and x0 <= f[2] and f[3] <= x1 and (y1 - y0, x1 - x0) == tile_size
            np.testing.assert_allclose(record["mean"], a[..., c].mean(), rtol=1e-5, atol=1e-6)
            assert record["fires"] == pytest.approx((a[..., c].max(axis=(1, 2)) > 0).mean(), abs=1e-6)
            assert record["dead"] == bool(a[..., c].max() <= 0)
            positive = top.values[c] > 0
            counts = collections.Counter(labels[top.image[c][positive]].tolist())
            assert dict(map(tuple, record["classes"])) == dict(counts)
            share = max(counts.values()) / positive.sum() if counts else 0.0
            assert record["selectivity"] == pytest.approx(share, rel=1e-5)


def test_sheets_hold_deconv_project_of_the_same_units(reference_tile, tile_column, sheet_tile, explorer_site, built):
    """For two units of every layer: the 9 projections, 9 patches and the top image's three rules, decoded from
    the sprite sheets at the coordinates the data file gives, equal deconv.project rendered the same way."""
    folder, _, layers = explorer_site(built["dir"])
    for layer in LAYERS:
        data = layers[layer]
        live = [u for u in data["units"] if not u["dead"]]
        for record in (live[0], live[-1]):
            want = _reference_tiles(built, layer, record, reference_tile)
            assert len(want) == 9 + 9 + 2
            for (kind, rank), tile in want.items():
                got = sheet_tile(folder, data, record, tile_column(data, kind, rank))
                assert got.shape == tile.shape
                assert np.abs(got.astype(int) - tile).max() <= 1, (layer, record["unit"], kind, rank)
            assert np.ptp(want[("deconvnet", 0)]) > 0  # a real projection, not a flat tile
        overview = sprites.load(folder / data["overview"]["file"])
        columns = data["overview"]["columns"]
        for record in data["units"]:  # the overview's tile of a unit is its strongest projection
            u = record["unit"]
            np.testing.assert_array_equal(sprites.tile(overview, u // columns, u % columns, tuple(data["tile"])),
                                          sheet_tile(folder, data, record, 0))


def test_every_file_the_page_names_exists(explorer_site, built):
    folder, site, layers = explorer_site(built["dir"])
    index = (built["dir"] / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', index):
        assert (built["dir"] / ref).is_file(), ref
    for data in layers.values():
        for sheet in data["sheets"] + [data["overview"]]:
            height, width = sprites.load(folder / sheet["file"]).shape[:2]
            assert (sheet["width"], sheet["height"]) == (width, height)
    assert [p.name for p in built["dir"].glob("site-*")] == [folder.name]
    assert not list(built["dir"].glob(".site-*"))


def _tiles_shown(page) -> list[dict]:
    return page.evaluate("""[...document.querySelectorAll('section:not([hidden]) .tile')].map(e => ({
        kind: e.dataset.kind, rank: e.dataset.rank, rule: e.dataset.rule, layer: e.dataset.layer,
        unit: e.dataset.unit, sheet: e.dataset.sheet, x: +e.dataset.x, y: +e.dataset.y,
        image: getComputedStyle(e).backgroundImage, position: getComputedStyle(e).backgroundPosition,
        width: e.getBoundingClientRect().width}))""")


def _view(page) -> tuple:
    return tuple(page.evaluate("[location.hash, document.body.dataset.view, "
                               "document.querySelector('section:not([hidden])')?.dataset.unit ?? null]"))


def _await_view(page, hash_: str, view: str) -> None:
    """Wait until the page shows what `hash_` names (the view follows the hash on its hashchange event)."""
    layer, _, unit = hash_[1:].partition("/")
    section = "document.querySelector('section:not([hidden])')"
    page.wait_for(f"location.hash === {json.dumps(hash_)} && document.body.dataset.view === {json.dumps(view)} && "
                  f"{section}?.dataset.layer === {json.dumps(layer)} && "
                  f"({section}?.dataset.unit ?? null) === {json.dumps(unit or None)}")


def test_the_page_in_headless_chromium(reference_tile, repo_root, tile_column, sheet_tile, explorer_site, built,
                                      tmp_path):
    """Overview of every layer (one element per unit, dead ones marked), a unit page reached by a click showing
    the sheets' tiles at the data's coordinates (which equal deconv.project), keyboard, typed unit number, URL
    fragment, sorting by selectivity; no request fails, no script error, first paint under a second."""
    folder, site, layers = explorer_site(built["dir"])
    url = (built["dir"] / "index.html").resolve().as_uri()
    (repo_root / "artifacts" / "explorer").mkdir(parents=True, exist_ok=True)
    with browser.Page() as page:
        page.open(url)
        page.wait_for("document.body.dataset.view === 'overview'")
        assert page.evaluate("document.getElementById('overview').dataset.layer") == "conv1"  # the first layer
        paint = page.wait_for("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
        assert paint < 1000, f"first contentful paint after {paint} ms"
        for layer in LAYERS:
            page.click(f'.layer-tab[data-layer="{layer}"]')
            _await_view(page, f"#{layer}", "overview")
            cells = page.evaluate("[...document.querySelectorAll('#overview .unit-cell')].map(e => "
                                  "[e.dataset.layer, +e.dataset.unit, e.classList.contains('dead')])")
            data = layers[layer]
            assert cells == [[layer, u["unit"], u["dead"]] for u in data["units"]]
            columns, (h, w) = data["overview"]["columns"], data["tile"]
            for t in _tiles_shown(page):
                u = int(t["unit"])
                assert (t["layer"], t["kind"], t["sheet"]) == (layer, "overview", data["overview"]["file"])
                assert (t["x"], t["y"]) == ((u % columns) * (w + 1), (u // columns) * (h + 1))
                assert t["image"].endswith(f'{folder.name}/{data["overview"]["file"]}")')
        page.screenshot(repo_root / "artifacts" / "explorer" / "overview.png")

        page.click('.layer-tab[data-layer="conv2"]')
        _await_view(page, "#conv2", "overview")
        page.click('.unit-cell[data-layer="conv2"][data-unit="3"]')
        _await_view(page, "#conv2/3", "unit")
        data, record = layers["conv2"], layers["conv2"]["units"][3]
        shown = _tiles_shown(page)
        assert sorted(collections.Counter(t["kind"] for t in shown).items()) == [
            ("deconvnet", 9), ("patch", 9), ("rule", 3)]
        want = _reference_tiles(built, "conv2", record, reference_tile)
        sheet = data["sheets"][record["sheet"]]["file"]
        zoom = shown[0]["width"] / data["tile"][1]
        for t in shown:
            assert (t["layer"], t["unit"], t["sheet"]) == ("conv2", "3", sheet)
            kind, rank = (t["rule"], 0) if t["kind"] == "rule" else (t["kind"], int(t["rank"]))
            column = tile_column(data, kind, rank)
            assert (t["x"], t["y"]) == (column * (data["tile"][1] + 1), record["row"] * (data["tile"][0] + 1))
            assert t["position"] == f"{-t['x'] * zoom:g}px {-t['y'] * zoom:g}px"
            got = sheet_tile(folder, data, record, column)
            assert np.abs(got.astype(int) - want[(kind, rank)]).max() <= 1, (kind, rank)
        text = page.evaluate("document.getElementById('unit').innerText")
        assert site["classes"][record["top"][0]["label"]] in text and f"{record['top'][0]['value']}" in text
        page.screenshot(repo_root / "artifacts" / "explorer" / "unit.png")
        page.screenshot(tmp_path / "unit.png")

        for key, hash_, view in (("ArrowRight", "#conv2/4", "unit"), ("ArrowLeft", "#conv2/3", "unit"),
                                 ("]", "#conv3/3", "unit"), ("[", "#conv2/3", "unit"), ("Escape", "#conv2", "overview"),
                                 ("ArrowRight", "#conv2/0", "unit")):
            page.press(key)
            _await_view(page, hash_, view)
            assert _view(page)[2] == (hash_.split("/")[1] if "/" in hash_ else None)
        for key in ("1", "2", "Enter"):
            page.press(key)
        _await_view(page, "#conv2/12", "unit")

        order = page.evaluate("document.getElementById('sort').value = 'selectivity'; "
                              "document.getElementById('sort').dispatchEvent(new Event('change')); 1")
        assert order == 1
        page.press("Escape")
        _await_view(page, "#conv2", "overview")
        shown_order = page.evaluate("[...document.querySelectorAll('#overview .unit-cell')].map(e => +e.dataset.unit)")
        units = layers["conv2"]["units"]
        assert shown_order == sorted(range(len(units)), key=lambda u: (units[u]["dead"], -units[u]["selectivity"], u))
        page.press("ArrowRight")  # the next unit follows the chosen order
        _await_view(page, f"#conv2/{shown_order[0]}", "unit")

        page.open(url + "#conv3/5")  # a link to a unit opens its page
        _await_view(page, "#conv3/5", "unit")
        assert page.evaluate("document.querySelectorAll('#unit .tile[data-layer=conv3][data-unit=\"5\"]').length") == 21
        page.open(url + "#conv3/99")
        page.wait_for("document.body.dataset.view === 'message'")
        assert "conv3 has units 0 to 15" in page.evaluate("document.getElementById('message').textContent")
        page.screenshot(tmp_path / "message.png")
        assert page.failed_requests() == []
        assert page.errors() == []


def test_the_browser_check_sees_failed_requests_and_script_errors(tmp_path):
    (tmp_path / "bad.html").write_text("<!doctype html><img src='missing.png'><script>throw new Error('boom')"
                                       "</script>")
    with browser.Page() as page:
        page.open((tmp_path / "bad.html").as_uri())
        page.wait_for("document.readyState === 'complete'")
        assert len(page.failed_requests()) == 1 and "missing.png: net::ERR_FILE_NOT_FOUND" in page.failed_requests()[0]
        assert any("boom" in e for e in page.errors())


def test_rerun_replaces_the_site_and_a_failed_one_leaves_it(explorer_site, built, tmp_path, monkeypatch):
    config = built["config"].copy_and_resolve_references()
    config.layers = ("conv1",)
    explore.run(config, tmp_path)
    first, _, layers = explorer_site(tmp_path)
    config.layers = ("conv2",)
    explore.run(config, tmp_path)
    second, _, layers = explorer_site(tmp_path)
    assert list(layers) == ["conv2"] and second != first and not first.exists()
    assert [p.name for p in tmp_path.glob("site-*")] == [second.name]
    before = (tmp_path / "index.html").read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(sprites, "save", broken)
    config.layers = ("conv1",)
    with pytest.raises(OSError, match="disk full"):
        explore.run(config, tmp_path)
    assert (tmp_path / "index.html").read_text() == before
    assert explorer_site(tmp_path)[0] == second and list(explorer_site(tmp_path)[2]) == ["conv2"]
    assert not list(tmp_path.glob(".site-*"))


def test_bad_input_is_a_clear_error(built, tmp_path):
    config = built["config"].copy_and_resolve_references()
    config.layers = ("conv9",)
    with pytest.raises(ValueError, match=r"has no layer 'conv9'; its layers: \['conv1', 'pool1'"):
        explore.run(config, tmp_path / "a")
    assert not (tmp_path / "a").exists()  # nothing written
    config.layers, config.k = (), 30
    with pytest.raises(ValueError, match="need 1 <= k <= histogram_k, got k=30, histogram_k=20"):
        explore.run(config, tmp_path / "a")
    config.k = 9
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot write the explorer into .*file/site"):
        explore.run(config, tmp_path / "file" / "site")
    net, images, about = explore.load(config)
    nothing = pipeline.ArraySource("empty", np.zeros((0, 28, 28, 1), np.uint8), np.zeros(0, np.int32))
    empty = explore.Images(images.subject, nothing)
    with pytest.raises(ValueError, match="no images to explore: the dataset .*empty.* is empty"):
        explore.explore(net, empty, tmp_path / "b", config, about)
    config.model = "no_such_module:network"
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        explore.run(config, tmp_path / "c")


def test_config_presets_have_the_fields():
    for preset in ("fashion_mnist", "tiny", "zfnet", "alexnet"):
        c = explore_config.get_config(preset)
        assert c.k == 9 and c.layers == () and c.model == ""
    assert explore_config.get_config("zfnet").tile_size == 96
