"""The command line as a user meets it (subprocesses, real files): a Fashion-MNIST run trains, resumes and loads as a
network whatever the preset's widths; imported torchvision-layout weights project a photo with no dataset; every
error a user can cause is exit status 1 and one line naming it; runs end with what they wrote."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from zfjax.data import fashion_mnist
from zfjax.network import models, weights
from zfjax.training import trained

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(fashion_mnist.DEFAULT_DIR).is_dir(),
                                reason="needs the embedded Fashion-MNIST files")

# Runs `python -m <module> <flags>` and, at exit, writes the TensorFlow modules it had imported to a file.
RUN_RECORDING_IMPORTS = """
import atexit, runpy, sys
record, module = sys.argv.pop(1), sys.argv.pop(1)
atexit.register(lambda: open(record, "w").write(" ".join(m for m in sys.modules if m.split(".")[0] == "tensorflow")))
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""
ORBAX_NOISE = ("could not be restored", "read only", "CheckpointManager")


@pytest.fixture(scope="session")
def cli(repo_root, subprocess_env):
    """``cli(module, *args, tmp_path=None, **env)``: `python -m experiments.<module> args` from the repo root; with
    `tmp_path`, also the TF modules it imported."""
    def run(module, *args, tmp_path=None, **env):
        command = [sys.executable, "-m", f"experiments.{module}", *args] if tmp_path is None else \
            [sys.executable, "-c", RUN_RECORDING_IMPORTS, str(tmp_path / "imports.txt"), f"experiments.{module}",
             *args]
        return subprocess.run(command, cwd=repo_root, env=subprocess_env(**env), capture_output=True, text=True,
                              timeout=600)
    return run


def user_error(done):
    """The stderr of a run that failed on a user error: exit status 1, one line, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith("error: ")
    return lines[0]


def progress_free(stderr):
    """stderr without tqdm's progress bars (carriage-return-separated redraws)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "it/s" not in line
            and "step/s" not in line and "s/step" not in line and "img/s" not in line and "?step" not in line]


@pytest.fixture(scope="module")
def fmnist_run(cli, tmp_path_factory):
    """The Fashion-MNIST training config from the command line (2 steps of 512 images), then resumed to step 4."""
    root = tmp_path_factory.mktemp("cli")
    args = ["--config=experiments/configs/fashion_mnist.py", f"--workdir={root / 'run'}", "--config.train_subset=512",
            "--config.eval_subset=128", "--config.snapshot_epochs=()"]
    first = cli("train_imagenet", *args, "--config.max_steps=2", tmp_path=root)
    assert first.returncode == 0, first.stderr[-3000:]
    imports = (root / "imports.txt").read_text()
    resumed = cli("train_imagenet", *args, "--config.max_steps=4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root / "run", first, imports, resumed


def test_training_is_quiet_tensorflow_free_and_ends_with_what_it_wrote(fmnist_run):
    workdir, first, imports, resumed = fmnist_run
    assert imports == ""  # no TensorFlow module was imported by a Fashion-MNIST run
    for done, step in ((first, 2), (resumed, 4)):
        assert progress_free(done.stderr) == [], done.stderr[-3000:]  # no log lines, no orbax warnings
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 2 and f"on fashion_mnist to step {step}: test top-1" in lines[0]
        assert lines[1].startswith(f"wrote {workdir}/: checkpoints/{step}") and "network.json" in lines[1]
    assert not any(noise in resumed.stderr for noise in ORBAX_NOISE)


def test_the_run_loads_as_its_network_whatever_the_preset_widths(cli, fmnist_run, tmp_path):
    workdir = fmnist_run[0]
    net = trained.load_net(workdir)
    assert net.arch.conv("conv3").features == 64 != models.get("small").conv("conv3").features
    # The tiny preset's training config has other widths (8/16 maps): the network is the run's, not the preset's.
    done = cli("top9", "--config=experiments/configs/top9.py:tiny", f"--config.checkpoint={workdir}",
               "--config.layers=('conv1','conv3')", f"--workdir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert progress_free(done.stderr) == []
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["network"] == f"{workdir} (step 4)"
    assert max(max(v) for v in results["conv3"]["values"]) > 0
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"done in ") and "index.html, results.json, top9_conv1.png, top9_conv3.png" in lines[0]
    assert lines[1] == f"open {tmp_path / 'index.html'}"


def test_a_preset_of_another_dataset_names_the_field_and_the_fix(cli, fmnist_run, tmp_path):
    line = user_error(cli("top9", "--config=experiments/configs/top9.py:zfnet",
                          f"--config.checkpoint={fmnist_run[0]}", f"--workdir={tmp_path}"))
    assert "trained on fashion_mnist, but the preset's train.dataset is 'imagenet2012'" in line
    assert "--config=<config file>:fashion_mnist" in line


def test_torchvision_weights_project_a_photo_with_no_dataset_on_disk(cli, tmp_path):
    arch = models.get("alexnet_torchvision", init="fan_in")
    weights.save(jax.device_get(models.init(arch, jax.random.key(0))), tmp_path / "alexnet.safetensors", arch,
                 layout="torchvision")
    home = tmp_path / "home"
    home.mkdir()
    done = cli("occlusion", "--config=experiments/configs/occlusion.py:alexnet",
               f"--config.weights={tmp_path / 'alexnet.safetensors'}", "--config.images=skimage:chelsea",
               "--config.labels=281", "--config.patch=112", "--config.stride=112", f"--workdir={tmp_path / 'out'}",
               tmp_path=tmp_path, HOME=str(home), TFDS_DATA_DIR=str(home / "tfds"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "imports.txt").read_text() == ""
    assert not (home / "tensorflow_datasets").exists() and not (home / "tfds").exists()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["network"].endswith("(inputs normalized: torchvision)")
    assert np.asarray(results["images"][0]["prob_true"]).shape == (2, 2)


def test_a_config_or_flag_mistake_is_one_line(cli, tmp_path):
    base = ["--config=experiments/configs/occlusion.py:tiny", f"--workdir={tmp_path}"]
    line = user_error(cli("occlusion", *base, "--config.pach=4"))
    assert "config has unknown fields ['pach'] (--config.pach=4)" in line and '"patch"' in line
    assert "unknown preset 'bogus'" in user_error(cli("occlusion", "--config=experiments/configs/occlusion.py:bogus",
                                                      f"--workdir={tmp_path}"))
    assert "No such file or directory: 'experiments/configs/nope.py'" in user_error(
        cli("train_imagenet", "--config=experiments/configs/nope.py", f"--workdir={tmp_path}"))
    assert "flag --config.patch=abc" in user_error(cli("occlusion", *base, "--config.patch=abc"))
    assert not any(tmp_path.iterdir())


def test_bad_input_is_one_line_naming_it(cli, tmp_path):
    net = ["--config.random_init=True", f"--workdir={tmp_path / 'out'}"]
    line = user_error(cli("top9", "--config=experiments/configs/top9.py:tiny", "--config.layers=('conv9',)", *net))
    assert "small has no layer 'conv9'; its layers: ['conv1', 'pool1'" in line
    occlusion = ["--config=experiments/configs/occlusion.py:tiny", *net]
    line = user_error(cli("occlusion", *occlusion, "--config.indices=(99999,)"))
    assert "indices [99999] are out of range: the evaluation split of fashion_mnist has 256 images" in line
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "photo.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "photo.png").read_bytes()[:50])
    line = user_error(cli("occlusion", *occlusion, f"--config.images=files:{tmp_path / 'cut.png'}",
                          "--config.labels=(0,)"))
    assert f"cannot read image {tmp_path / 'cut.png'}" in line
    line = user_error(cli("top9", "--config=experiments/configs/top9.py:tiny",
                          f"--config.checkpoint={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'out'}"))
    assert line.startswith("error: missing data: no checkpoints in")


SCRIPT = """
import sys
from experiments import cli
def main(argv):
    raise {}("the problem")
cli.run_app(main)
"""


@pytest.mark.parametrize("error", ["ValueError", "FileNotFoundError"])
def test_user_errors_are_one_line_and_verbose_shows_the_traceback(repo_root, subprocess_env, error):
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(error)], cwd=repo_root, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"error: {'missing data: ' if error == 'FileNotFoundError' else ''}the problem (--verbose shows the traceback)"]
    verbose = subprocess.run([sys.executable, "-c", SCRIPT.format(error), "--verbose"], cwd=repo_root,
                             env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and f"{error}: the problem" in verbose.stderr


def test_programming_errors_keep_their_traceback(repo_root, subprocess_env):
    done = subprocess.run([sys.executable, "-c", SCRIPT.format("TypeError")], cwd=repo_root, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "TypeError: the problem" in done.stderr
