"""The visual experiments (top9, evolution, filters) and the demo, end to end on the tiny Fashion-MNIST run."""
import json
import pathlib
import re

import numpy as np
import pytest

from experiments import demo, subject, top9
from experiments.configs import top9 as top9_config
from zfjax.network import weights
from zfjax.training import checkpoints

MINE = ("top9", "evolution", "filters")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> pathlib.Path:
    """The demo on the tiny preset (trains 2 epochs of 512 images, then the three experiments)."""
    workdir = tmp_path_factory.mktemp("demo")
    demo.run(workdir, "tiny", experiments=MINE)
    return workdir


def _linked_figures(index: pathlib.Path) -> list[str]:
    return re.findall(r"<img src='([^']+)'", index.read_text())


def test_demo_links_every_figure_of_every_experiment(demo_dir):
    linked = _linked_figures(demo_dir / "index.html")
    for name in MINE:
        own = _linked_figures(demo_dir / name / "index.html")
        assert own and all((demo_dir / name / f).stat().st_size > 1000 for f in own)
        assert [f"{name}/{f}" for f in own] == [f for f in linked if f.startswith(name + "/")]
    assert (demo_dir / "train" / "learning_curves.png").is_file()
    assert "Failed" not in (demo_dir / "index.html").read_text()
    assert set(json.loads((demo_dir / "results.json").read_text())["seconds"]) == set(MINE)


def test_top9_results_are_the_top_activations_of_the_chosen_maps(demo_dir):
    res = json.loads((demo_dir / "top9" / "results.json").read_text())
    assert {f"top9_{layer}.png" for layer in top9_config.get_config("tiny").layers} <= set(
        _linked_figures(demo_dir / "top9" / "index.html"))
    for layer in ("conv1", "conv5"):
        values, images = np.array(res[layer]["values"]), np.array(res[layer]["image"])
        assert values.shape == (4, 9) and np.all(np.diff(values, axis=1) <= 0) and np.all(values[:, 0] > 0)
        assert all(len(set(row)) == 9 for row in images)  # nine different images per map
        assert res[layer]["maps"] == sorted(res[layer]["maps"])


def test_evolution_has_one_column_per_snapshot(demo_dir):
    res = json.loads((demo_dir / "evolution" / "results.json").read_text())
    assert res["epochs"] == sorted(checkpoints.snapshots(demo_dir / "train")) == [1, 2]
    for layer in ("conv1", "conv3"):
        assert set(res["layers"][layer]["epochs"]) == {"1", "2"}
        assert len(res["layers"][layer]["epochs"]["2"]["value"]) == len(res["layers"][layer]["maps"]) == 4


def test_filters_compares_two_conv1_shapes(demo_dir):
    res = json.loads((demo_dir / "filters" / "results.json").read_text())
    assert set(res) == {"coarse", "fine"} and all(0 < r["mean_frequency"] < 0.71 for r in res.values())
    assert (demo_dir / "filters" / "coarse" / "checkpoints").is_dir()  # trained alike, into the workdir
    assert res["fine"]["network"].startswith(str(demo_dir / "train"))
    figures = set(_linked_figures(demo_dir / "filters" / "index.html"))
    assert {"spectrum.png", "filters_coarse.png", "filters_fine.png", "top9_conv2_coarse.png"} <= figures


def test_top9_on_imported_weights_equals_the_checkpoint(demo_dir, tmp_path):
    config = top9_config.get_config("tiny")
    config.train = demo.train_config("tiny")
    config.checkpoint = str(demo_dir / "train")
    net = subject.load(config).built
    weights.save(net.params, tmp_path / "net.safetensors", net.arch)
    config.checkpoint, config.weights, config.layers = "", str(tmp_path / "net.safetensors"), ("conv2",)
    top9.run(config, tmp_path / "out")
    got = json.loads((tmp_path / "out" / "results.json").read_text())["conv2"]
    want = json.loads((demo_dir / "top9" / "results.json").read_text())["conv2"]
    assert got["maps"] == want["maps"] and got["image"] == want["image"]
    np.testing.assert_allclose(got["values"], want["values"], rtol=1e-5)


def test_no_network_or_snapshots_is_a_clear_error(tmp_path):
    from experiments import evolution
    from experiments.configs import evolution as evolution_config
    with pytest.raises(ValueError, match="set --config.checkpoint"):
        subject.load(top9_config.get_config("tiny"))
    with pytest.raises(ValueError, match="epoch snapshots"):
        evolution.run(evolution_config.get_config("tiny"), tmp_path)
