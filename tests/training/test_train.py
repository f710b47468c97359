"""The training loop for real on tiny data: outputs, invariants, eval against numpy, NaN stop, SIGKILL resume
(bit-identical), 8 CPU devices equal to 1, and the ImageNet path on TFDS mock data (10-crop eval)."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import tiny
from zfjax.data import pipeline
from zfjax.network import layers, models
from zfjax.training import checkpoints, metrics, train

STEPS = 32  # tiny config: 512 images / batch 32 = 16 steps per epoch, 2 epochs


@pytest.fixture(scope="module")
def straight(tiny_config, tmp_path_factory):
    """An uninterrupted in-process run of the tiny config: (workdir, final state)."""
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, train.train_and_evaluate(tiny_config(), workdir)


def _command(workdir, *overrides):
    return [sys.executable, "-m", "experiments.train_imagenet", "--config=experiments/configs/tiny.py",
            f"--workdir={workdir}", *overrides]


@pytest.fixture(scope="module")
def children(repo_root, subprocess_env, tmp_path_factory):
    """Start the subprocess runs at once (they overlap): one to be SIGKILLed mid-run, one on 8 CPU devices."""
    root = tmp_path_factory.mktemp("children")
    flags = os.environ.get("XLA_FLAGS", "")
    log = open(root / "eight.log", "wb")  # a file, not a pipe: orbax logs a lot and a full pipe would block
    eight = subprocess.Popen(_command(root / "eight", "--config.max_steps=16"), cwd=repo_root, stdout=log, stderr=log,
                             env=subprocess_env(XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=8"))
    killed = subprocess.Popen(_command(root / "resumed"), cwd=repo_root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=subprocess_env())
    yield root, killed, eight
    for p in (killed, eight):
        if p.poll() is None:
            p.kill()
    log.close()


def test_tiny_run_writes_metrics_checkpoints_snapshots_and_curves(straight):
    workdir, state = straight
    assert int(state.step) == STEPS
    series = metrics.read(workdir / "metrics.jsonl")
    assert sorted(series["train_loss"]) == list(range(4, STEPS + 1, 4))
    assert sorted(series["eval_top1"]) == [8, 16, 24, 32]
    assert all(0 <= v <= 1 for v in series["eval_top1"].values())
    assert (workdir / "learning_curves.png").stat().st_size > 1000
    step, params = checkpoints.latest(workdir)
    assert step == STEPS
    jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(state.params))
    snaps = checkpoints.snapshots(workdir)
    assert sorted(snaps) == [1, 2]
    jax.tree.map(np.testing.assert_array_equal, snaps[2], params)


def test_filters_stay_within_the_renormalization_radius(straight):
    _, state = straight
    for name, p in state.params.items():
        if p["w"].ndim == 4:
            assert float(layers.rms(p["w"], axis=(0, 1, 2)).max()) <= tiny.get_config().radius * (1 + 1e-5), name


def test_eval_step_averages_crop_softmax_like_numpy():
    arch = models.get("small", conv1={"features": 4}, conv2={"features": 4}, conv3={"features": 4},
                      conv4={"features": 4}, conv5={"features": 4}, fc6={"features": 8}, fc7={"features": 8})
    params = models.init(arch, jax.random.key(0))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 3, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 6).astype(np.int32)
    mask = np.array([1, 1, 1, 1, 1, 0], np.float32)
    out = jax.jit(lambda p, b: train.eval_step(p, b, arch=arch))(
        params, {"image": images, "label": labels, "mask": mask})
    logits = np.asarray(models.apply(arch, params, jnp.asarray(images.reshape(18, 28, 28, 1))).logits, np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).reshape(6, 3, 10).mean(1)
    order = np.argsort(-probs, axis=1)
    top1 = (order[:, 0] == labels) * mask
    top5 = (order[:, :5] == labels[:, None]).any(1) * mask
    nll = -np.log(probs[np.arange(6), labels]) * mask
    np.testing.assert_allclose(float(out["top1"]), top1.sum())
    np.testing.assert_allclose(float(out["top5"]), top5.sum())
    np.testing.assert_allclose(float(out["loss"]), nll.sum(), rtol=1e-5)
    assert float(out["count"]) == 5


def test_step_schedule_and_unknown_schedule(tiny_config):
    c = tiny_config(lr_schedule="step", lr_decay_epochs=(1, 1.5), learning_rate=0.1)
    sched = train.learning_rate_schedule(c, steps_per_epoch=10)
    np.testing.assert_allclose([sched(0), sched(9), sched(10), sched(14), sched(15)], [0.1, 0.1, 0.01, 0.01, 0.001],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="unknown lr_schedule 'cosine'"):
        train.learning_rate_schedule(tiny_config(lr_schedule="cosine"), 10)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    c = tiny_config(checkpoint_every_steps=1)
    real = train.load_data(c)
    order = pipeline.train_iterator(real.train, lambda ex, rng: ex, global_batch=c.batch_size, seed=c.seed,
                                    num_threads=1)
    next(order)
    target = next(order)["image"][0]  # an image of the second batch becomes NaN

    def poisoned(ex, rng):
        out = real.train_transform(ex, rng)
        return {**out, "image": out["image"] * np.nan} if np.array_equal(ex["image"], target) else out

    monkeypatch.setattr(train, "load_data", lambda config: real._replace(train_transform=poisoned))
    with pytest.raises(train.NonFiniteLossError, match="training loss is nan at step 2;"):
        train.train_and_evaluate(c, tmp_path)
    step, params = checkpoints.latest(tmp_path)
    assert step == 1
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(params))


def _steps(ckdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in ckdir.glob("*") if p.name.isdigit()) if ckdir.is_dir() else []


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_ends_bit_identical(repo_root, subprocess_env, straight, children):
    root, killed, _ = children
    ckdir = root / "resumed" / "checkpoints"
    deadline = time.time() + 240
    while killed.poll() is None and time.time() < deadline and not _steps(ckdir):
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 0 < max(_steps(ckdir)) < STEPS
    done = subprocess.run(_command(root / "resumed"), cwd=repo_root, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    step, params = checkpoints.latest(root / "resumed")
    assert step == STEPS
    want = jax.device_get(straight[1].params)
    jax.tree.map(np.testing.assert_array_equal, params, want)


@pytest.mark.slow
def test_eight_cpu_devices_give_the_one_device_losses(straight, children):
    root, _, eight = children
    eight.wait(timeout=300)
    assert eight.returncode == 0, (root / "eight.log").read_text()[-3000:]
    one = metrics.read(straight[0] / "metrics.jsonl")
    many = metrics.read(root / "eight" / "metrics.jsonl")
    for name in ("train_loss", "eval_loss", "eval_top1"):  # the first epoch (max_steps=16): rounding has not grown
        assert sorted(many[name]) == [s for s in sorted(one[name]) if s <= 16]
        np.testing.assert_allclose(list(many[name].values()), [one[name][s] for s in many[name]], rtol=1e-4)
    step, params = checkpoints.latest(root / "eight")
    assert step == 16
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), params,
                 checkpoints.snapshots(straight[0])[1])


def test_imagenet_config_on_mock_data_with_ten_crop_eval(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from experiments.configs import zfnet
    c = zfnet.get_config()
    small = {name: {"features": 8} for name in ("conv1", "conv2", "conv3", "conv4", "conv5")}
    c.update(data_dir=str(tmp_path / "data"), resize_size=72, image_size=64, batch_size=4, eval_batch_size=4,
             num_epochs=1, checkpoint_every_steps=1, log_every_steps=1, num_data_threads=1,
             model_overrides={**small, "fc6": {"features": 16}, "fc7": {"features": 16}})
    with tfds.testing.mock_data(num_examples=8):
        state = train.train_and_evaluate(c, tmp_path / "run")
        from zfjax import data as data_lib
        d = data_lib.load(c)
        views = [d.eval_transform(d.eval[i]) for i in range(len(d.eval))]
    assert int(state.step) == 2
    arch = train.build_arch(c, d)
    hits, nll = [], []
    for v in views:  # reference: each image's 10 crops through the net, softmax averaged in numpy
        logits = np.asarray(models.apply(arch, state.params, jnp.asarray(v["image"])).logits, np.float64)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p = (p / p.sum(1, keepdims=True)).mean(0)
        hits.append(np.argmax(p) == v["label"])
        nll.append(-np.log(p[v["label"]]))
    series = metrics.read(tmp_path / "run" / "metrics.jsonl")
    np.testing.assert_allclose(series["eval_top1"][2], np.mean(hits))
    np.testing.assert_allclose(series["eval_loss"][2], np.mean(nll), rtol=1e-4)
    assert np.isfinite(series["train_loss"][2]) and views[0]["image"].shape == (10, 64, 64, 3)


def test_paper_configs_build_the_paper_networks():
    from experiments.configs import ablation, alexnet, zfnet, zfnet_b
    from zfjax.data import Data
    imagenet = Data("imagenet2012", None, None, 1000, (224, 224, 3), 10, None, None)
    zf = train.build_arch(zfnet.get_config(), imagenet)
    assert models.count_params(zf) == 62_357_608  # the paper's ZFNet (docs/paper-facts.md)
    assert all(f.dropout == 0.5 for f in zf.fcs) and zf.init == "paper" and zf.init_scale == 0.01
    assert train.build_arch(alexnet.get_config(), imagenet).conv("conv1").kernel == 11
    assert train.build_arch(zfnet_b.get_config(), imagenet).conv("conv4").features == 1024
    cut = train.build_arch(ablation.get_config("alexnet,no_conv34_fc67"), imagenet)
    assert cut.layer_names == ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5", "fc8")
    for variant in ablation.VARIANTS:
        train.build_arch(ablation.get_config(f"zfnet,{variant}"), imagenet)
    with pytest.raises(ValueError, match="no_such"):
        ablation.get_config("zfnet,no_such")
