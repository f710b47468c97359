"""Per-layer features (Table 7): the script end to end on the digits analog, dimensions, resumable features."""
import json

import numpy as np

from experiments import layer_features
from experiments.configs import layer_features as lf_config
from zfjax.data import load as load_data
from zfjax.training import train


def test_layer_features_script_end_to_end_on_digits(tmp_path_factory, tmp_path):
    config = lf_config.get_config("tiny")
    config.pretrain_workdir = str(tmp_path_factory.getbasetemp() / "tiny_pretrain")  # trained by the first user
    results = layer_features.run(config, tmp_path)
    arch = train.build_arch(config.pretrain, load_data(config.pretrain))
    layers = arch.paper_layers
    assert results["layers"] == list(layers) and len(layers) == 7
    shapes = arch.shapes()
    for layer in layers:  # maps: max over a grid (4, or the map size if smaller) of cells; fc: as they are
        s = shapes[layer]
        assert results["dims"][layer] == (min(config.grid, s[0]) ** 2 * s[2] if len(s) == 3 else s[0])
        for k in layer_features.CLASSIFIERS:
            acc = results["accuracy"][layer][k]
            assert len(acc) == config.num_splits and all(0 <= a <= 1 for a in acc)
        chunks = sorted((tmp_path / "features" / layer).glob("chunk_*.npy"))
        assert sum(len(np.load(c)) for c in chunks) == 1797
    assert json.loads((tmp_path / "results.json").read_text())["dims"] == results["dims"]
    assert [r[1] for r in results["table"]["rows"]] == list(layers)
    assert (tmp_path / "accuracy_vs_layer.png").stat().st_size > 1000
    index = (tmp_path / "index.html").read_text()  # digits has no paper columns, and the caption says so
    assert "paper:" not in index and "'paper' columns" not in index and "reports no numbers" in index
    # A second run reads the stored features back instead of recomputing them: same numbers.
    again = layer_features.run(config, tmp_path)
    assert again["accuracy"] == results["accuracy"]


def test_svm_separates_separable_features():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    x = rng.normal(size=(40, 6)) + 10 * np.eye(4, 6)[y]
    assert layer_features.svm_accuracy(x[:20], y[:20], x[20:], y[20:], c=1.0) == 1.0
