"""PASCAL VOC 2012 (Table 6): AP against a hand computation, one-vs-all against scikit-learn, the script on
`tfds.testing.mock_data`, and the message for a missing dataset."""
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import voc
from experiments.configs import voc as voc_config
from zfjax.analyses import probe


def test_average_precision_equals_hand_computation():
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.3], [0.8, 0.9, 0.1], [0.7, 0.1, 0.5], [0.1, 0.5, 0.2]])
    # class 0 ranked: + - + -  -> precisions at the hits 1/1, 2/3; class 1 ranked: + - - +  -> 1/1, 2/4.
    expected = [(1 + 2 / 3) / 2, (1 + 2 / 4) / 2]
    ap = probe.average_precision(labels, scores)
    np.testing.assert_allclose(ap[:2], expected)
    assert np.isnan(ap[2])  # no positive example: undefined, left out of the mean
    assert probe.mean_ap(ap) == pytest.approx(np.mean(expected))
    with pytest.raises(ValueError, match="both be"):
        probe.average_precision(labels, scores[:, :2])


def test_one_vs_all_equals_independent_sklearn_logistic_regressions():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32) * [1, 5, 0.2, 3] + 2
    y = (x @ rng.normal(size=(4, 3)) + rng.normal(size=(50, 3)) > 0).astype(np.int32)
    l2 = 0.1
    head = probe.fit_linear(x, y, loss="sigmoid", l2=l2, steps=200)
    mean, std = probe.standardization(x)
    for c in range(3):
        ref = LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10000).fit((x - mean) / std, y[:, c])
        np.testing.assert_allclose(1 / (1 + np.exp(-head.logits(x)[:, c])),
                                   ref.predict_proba((x - mean) / std)[:, 1], atol=2e-3)


def test_voc_script_end_to_end_on_mock_data(tmp_path_factory, tmp_path):
    config = voc_config.get_config("tiny")
    config.pretrain_workdir = str(tmp_path_factory.getbasetemp() / "tiny_pretrain")  # trained by the first user
    with tfds.testing.mock_data(num_examples=12):
        results = voc.run(config, tmp_path)
    assert len(results["classes"]) == 20 and len(results["table"]["rows"]) == 21
    ap = np.asarray(results["average_precision"], float)
    assert np.all((ap[~np.isnan(ap)] >= 0) & (ap[~np.isnan(ap)] <= 1 + 1e-9))
    assert results["mean_ap"] == pytest.approx(np.nanmean(ap))
    assert json.loads((tmp_path / "results.json").read_text())["mean_ap"] == pytest.approx(results["mean_ap"])
    assert results["table"]["rows"][-1][0] == "mean" and results["table"]["rows"][-1][2] == voc.PAPER_MEAN
    assert (tmp_path / "average_precision.png").is_file() and "<table>" in (tmp_path / "index.html").read_text()
    assert "| aeroplane |" in (tmp_path / "results.md").read_text()


def test_missing_voc_is_one_clear_message(tmp_path):
    config = voc_config.get_config("tiny")
    config.data_dir = str(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match=r"'voc/2012' is not prepared.*tfds.data_source\('voc/2012'"):
        voc.run(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
