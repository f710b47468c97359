"""Transfer (Tables 4, 5, Fig. 9): the linear classifier against scikit-learn, frozen layers, the script end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import transfer as transfer_exp
from experiments.configs import transfer as transfer_config
from zfjax.analyses import probe, transfer
from zfjax.data import transfer as transfer_data
from zfjax.network import models


def _blobs(n=60, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 20, d) + rng.normal(size=(classes, d))[y] * 3 + 7
    return x.astype(np.float32), y


def test_fit_linear_equals_sklearn_multinomial_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    x, y = _blobs()
    l2 = 0.05
    head = probe.fit_linear(x, y, l2=l2, steps=300)
    mean, std = probe.standardization(x)
    # sklearn minimizes 0.5 |w|^2 + C sum CE; ours mean CE + l2/2 |w|^2 -> C = 1 / (l2 N).
    ref = LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10000).fit((x - mean) / std, y)
    ours = np.exp(head.logits(x))
    ours /= ours.sum(1, keepdims=True)
    np.testing.assert_allclose(ours, ref.predict_proba((x - mean) / std), atol=2e-3)


def test_fit_linear_rejects_bad_input():
    x, y = _blobs()
    with pytest.raises(ValueError, match="unknown loss"):
        probe.fit_linear(x, y, loss="hinge")
    with pytest.raises(ValueError, match="N labels"):
        probe.fit_linear(x, y[:-1])
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.1"):
        probe.fit_linear(x, y, num_classes=2)
    with pytest.raises(ValueError, match="multi-hot"):
        probe.fit_linear(x, np.eye(3)[y])
    with pytest.raises(FloatingPointError, match="inf/NaN"):
        probe.fit_linear(np.where(np.arange(len(x))[:, None] == 3, np.nan, x), y, steps=3)


def test_frozen_layers_unchanged_during_transfer():
    arch = models.get("small", conv1={"features": 4}, conv2={"features": 4}, conv3={"features": 4},
                      conv4={"features": 4}, conv5={"features": 4}, fc6={"features": 8}, fc7={"features": 8})
    import jax
    params = models.init(arch, jax.random.key(0))
    before = jax.tree.map(np.array, params)
    x = np.random.default_rng(1).normal(size=(12, 28, 28, 1)).astype(np.float32)
    labels = np.arange(12) % 3
    feats = transfer.extract_all(arch, params, x, "fc7")
    new_arch, new_params, head = transfer.transfer_params(arch, params, feats, labels, num_classes=3, l2=1e-2,
                                                          steps=30)
    for layer in set(before) - {"fc8"}:
        for k in before[layer]:
            np.testing.assert_array_equal(np.asarray(new_params[layer][k]), before[layer][k])
    assert new_arch.num_classes == 3 and new_params["fc8"]["w"].shape == (8, 3)
    # The assembled network (frozen layers + new fc8) computes the head on the frozen fc7 features.
    np.testing.assert_allclose(transfer.predict(new_arch, new_params, x), head.logits(feats), rtol=1e-4, atol=1e-4)


def test_paper_layers():
    assert models.get("zfnet").paper_layers == ("pool1", "pool2", "conv3", "conv4", "pool5", "fc6", "fc7")
    assert models.get("zfnet", remove=("conv3", "fc7")).paper_layers == ("pool1", "pool2", "conv4",
                                                                                   "pool5", "fc6")


def test_transfer_script_end_to_end_on_digits(tmp_path_factory, tmp_path):
    config = transfer_config.get_config("tiny")
    config.pretrain_workdir = str(tmp_path_factory.getbasetemp() / "tiny_pretrain")  # trained by the first user
    digits = transfer_data.digits()
    seen = {transfer_data.image_hash(digits.images[i]) for i in (0, 1, 2)}
    (tmp_path / "hashes.txt").write_text("\n".join(sorted(seen)) + "\n")
    config.hashes_file = str(tmp_path / "hashes.txt")
    results = transfer_exp.run(config, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["table"] == results["table"]
    expected_dropped = sum(transfer_data.image_hash(im) in seen for im in digits.images)
    assert results["dropped_duplicates"] == expected_dropped >= 3
    assert results["num_images"] == len(digits.images) - expected_dropped
    for n in config.shots:
        runs = results["runs"][str(n)]
        assert len(runs) == config.num_splits
        assert all(r["num_train"] == 10 * n and r["num_test"] == 10 * config.max_test for r in runs)
        assert all(0 <= r["pretrained"] <= 1 and 0 <= r["scratch"] <= 1 for r in runs)
    assert [r[0] for r in results["table"]["rows"]] == ["ours: frozen layers up to fc7 + softmax",
                                                        "ours: same net from scratch"]
    assert (tmp_path / "out" / "accuracy_vs_shots.png").stat().st_size > 1000
    assert "accuracy_vs_shots.png" in (tmp_path / "out" / "index.html").read_text()


def test_missing_caltech256_is_one_clear_message(repo_root, subprocess_env, tmp_path):
    """The command line on a missing image folder: exit status 1 and one line naming what to download."""
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.transfer", "--config=experiments/configs/transfer.py:caltech256",
         f"--config.data_dir={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'out'}"],
        cwd=repo_root, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: missing data:") and "256_ObjectCategories" in last
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown dataset"):
        transfer_data.load("caltech512")
