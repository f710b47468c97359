"""Bad input at every public entry point: one table of (call, exception, message). Each message must name the
problem and, where there is a choice, the accepted values. All checks run before any compilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import default as default_config
from zfjax import deconv
from zfjax.analyses import features, occlusion, topk
from zfjax.network import models, receptive_field, weights
from zfjax.training import checkpoints, train

ARCH = models.get("small")  # 28x28x1, 10 classes; conv2 has 64 maps of 14x14
OTHER = models.get("small", conv1={"features": 16})


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, tiny_config, train_iterator):
    """Parameters of ARCH and OTHER, a good image batch, a workdir holding a checkpoint of ARCH, and the config and
    iterator factories."""
    params = jax.device_get(models.init(ARCH, jax.random.key(0)))
    workdir = tmp_path_factory.mktemp("ckpt")
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save(1, {"params": params}, train_iterator(), {})
    ckpts.close()
    image = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    return {"p": params, "other": jax.device_get(models.init(OTHER, jax.random.key(1))), "x": image,
            "workdir": workdir, "tmp": tmp_path_factory.mktemp("bad"), "config": tiny_config,
            "iterator": train_iterator}


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


def _restore_other(c):
    ckpts = checkpoints.Checkpoints(c["workdir"])
    try:
        return ckpts.restore({"params": c["other"]}, c["iterator"]())
    finally:
        ckpts.close()


def _weights_of_other_arch(c):
    path = c["tmp"] / "other.safetensors"
    weights.save(c["other"], path, OTHER)
    return weights.load(path, ARCH)


NAN, INF = float("nan"), float("inf")
CASES = {
    # images: rank, channels, dtype, unscaled integers, NaN/Inf
    "apply rank 3": (lambda c: models.apply(ARCH, c["p"], c["x"][0]), "must be a float NHWC batch of rank 4"),
    "project RGB": (lambda c: deconv.project(ARCH, c["p"], np.repeat(c["x"], 3, -1), "conv2", 0),
                    r"input has 3 channels, small expects 1 \(input_shape \(28, 28, 1\)\)"),
    "project_many batch": (lambda c: deconv.project_many(ARCH, c["p"], c["x"], "conv2"), "takes one image"),
    "features uint8": (lambda c: features.extract(ARCH, c["p"], [np.zeros((2, 28, 28, 1), np.uint8)], "conv2"),
                       "dtype uint8 is not floating point: convert and scale images to float32 first"),
    "topk uint8": (lambda c: topk.scan(ARCH, c["p"], [np.zeros((2, 28, 28, 1), np.uint8)], layer="conv2"),
                   "dtype uint8 is not floating point"),
    "occlusion uint8": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], np.zeros((28, 28, 1), np.uint8), 0, patch=7,
                                                           stride=7), "dtype uint8 is not floating point"),
    "topk wrong size": (lambda c: topk.scan(ARCH, c["p"], [c["x"][:, :20]], layer="conv2"),
                        r"each batch must be an \(N, 28, 28, 1\) array"),
    "project NaN": (lambda c: deconv.project(ARCH, c["p"], _with(c["x"], (1, 3, 4, 0), NAN), "conv2", 0),
                    r"input has 1 NaN or infinite values \(first at index \(1, 3, 4, 0\)\)"),
    "project NaN closed over by jit": (lambda c: jax.jit(jax.vmap(lambda ch: deconv.project(
        ARCH, c["p"], _with(c["x"], (0, 2, 2, 0), NAN), "conv2", ch)))(jnp.arange(2)), "input has 1 NaN or infinite"),
    "project_many Inf": (lambda c: deconv.project_many(ARCH, c["p"], _with(c["x"][0], (0, 0, 0), INF), "conv2"),
                         "NaN or infinite values"),
    "occlusion NaN": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], _with(c["x"][0], (5, 5, 0), NAN), 0, patch=7,
                                                         stride=7), "NaN or infinite values"),
    "features NaN": (lambda c: features.extract(ARCH, c["p"], [_with(c["x"], (0, 0, 0, 0), NAN)], "conv2"),
                     "NaN or infinite values"),
    "topk -Inf": (lambda c: topk.scan(ARCH, c["p"], [_with(c["x"], (0, 1, 1, 0), -INF)], layer="conv2"),
                  "NaN or infinite values"),
    # layer names and projection rules
    "apply upto": (lambda c: models.apply(ARCH, c["p"], c["x"], upto="conv9"),
                   r"unknown layer upto='conv9'; small has \['conv1', 'pool1'"),
    "project layer": (lambda c: deconv.project(ARCH, c["p"], c["x"], "conv9", 0),
                      r"cannot project from layer 'conv9'; small has \['conv1', 'pool1'"),
    "project fc": (lambda c: deconv.project(ARCH, c["p"], c["x"], "fc6", 0), "cannot project from layer 'fc6'"),
    "project rule": (lambda c: deconv.project(ARCH, c["p"], c["x"], "conv2", 0, rule="gradcam"),
                     r"unknown rule 'gradcam'; choose one of \('deconvnet', 'guided', 'saliency'\)"),
    "project lcn_rule": (lambda c: deconv.project(ARCH, c["p"], c["x"], "pool1", 0, lcn_rule="skip"),
                         r"unknown lcn_rule 'skip'; choose one of \('identity', 'gradient'\)"),
    "features layer": (lambda c: features.extract(ARCH, c["p"], [c["x"]], "fc9"),
                       r"unknown layer 'fc9'; small has \['conv1'"),
    "topk layer": (lambda c: topk.scan(ARCH, c["p"], [c["x"]], layer="fc6"),
                   r"layer 'fc6' is not a conv or pool layer of small; small has \['conv1'"),
    "occlusion layer": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], c["x"][0], 0, patch=7, stride=7,
                                                           layer="conv9"), "choose one of"),
    "receptive field layer": (lambda c: receptive_field.receptive_field(ARCH, "fc7", (0, 0)),
                              r"no receptive field for layer 'fc7'; small has conv/pool maps \['conv1'"),
    # channels, positions, labels out of range
    "project channel": (lambda c: deconv.project(ARCH, c["p"], c["x"], "conv2", 64),
                        r"channel 64 is out of range: conv2 has 64 channels \(0..63\)"),
    "project channel < 0": (lambda c: deconv.project(ARCH, c["p"], c["x"], "conv2", -1), "out of range"),
    "project position": (lambda c: deconv.project(ARCH, c["p"], c["x"], "conv2", 0, position=(14, 0)),
                         r"position \[14, 0\] is outside the 14x14 map of conv2"),
    "project_many channels": (lambda c: deconv.project_many(ARCH, c["p"], c["x"][0], "conv2", [0, 70]),
                              r"out of range: conv2 has 64 channels \(0..63\)"),
    "receptive field position": (lambda c: receptive_field.receptive_field(ARCH, "conv2", (0, 14)),
                                 r"position \(0, 14\) is outside the 14x14 map of conv2"),
    "occlusion label": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], c["x"][0], 10, patch=7, stride=7),
                        "label 10 is out of range for 10 classes"),
    "occlusion label < 0": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], c["x"][0], -1, patch=7, stride=7),
                            "label -1 is out of range for 10 classes"),
    # occlusion geometry
    "occlusion patch": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], c["x"][0], 0, patch=29, stride=1),
                        "patch 29 is larger than the 28x28 image"),
    "occlusion stride 0": (lambda c: occlusion.occlusion_maps(ARCH, c["p"], c["x"][0], 0, patch=7, stride=0),
                           "stride must be a positive integer, got 0"),
    # configs
    "config field": (lambda c: default_config.check_fields(c["config"](learning_rte=0.1)),
                     r"config has unknown fields \['learning_rte'\]; the fields are \['batch_size'"),
    "config layer": (lambda c: train.build_arch(c["config"](model_overrides={"conv9": {"features": 2}}),
                                                train.load_data(c["config"]())), "unknown override 'conv9'"),
    "config schedule": (lambda c: train.learning_rate_schedule(c["config"](lr_schedule="cosine"), 10),
                        r"unknown lr_schedule 'cosine'; choose one of \('constant', 'step', 'plateau'\)"),
    # parameters and checkpoints of another architecture
    "project params": (lambda c: deconv.project(ARCH, c["other"], c["x"], "conv2", 0),
                       r"params\['conv1'\]\['w'\] has shape \(5, 5, 1, 16\), but small needs \(5, 5, 1, 32\)"),
    "features params": (lambda c: features.extract(ARCH, c["other"], [c["x"]], "conv2"),
                        r"params\['conv1'\]\['w'\] has shape \(5, 5, 1, 16\)"),
    "topk params": (lambda c: topk.scan(ARCH, c["other"], [c["x"]], layer="conv2"), r"params\['conv1'\]\['w'\]"),
    "weights of another arch": (_weights_of_other_arch, r"params\['conv1'\]\['w'\] has shape \(5, 5, 1, 16\), but "
                                                        r"small needs \(5, 5, 1, 32\)"),
    "checkpoint of another arch": (_restore_other, r"params/conv1/b has shape \(32,\) in the checkpoint and shape "
                                                   r"\(16,\) in this run"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_a_message_naming_it(ctx, case):
    call, match = CASES[case]
    with pytest.raises(ValueError, match=match):
        call(ctx)


def test_config_fields_are_the_documented_ones():
    from experiments.configs import alexnet, default, fashion_mnist, tiny, zfnet, zfnet_b
    for module in (alexnet, fashion_mnist, tiny, zfnet, zfnet_b):
        default.check_fields(module.get_config())
    with pytest.raises(ValueError, match=r"config has missing fields \['seed'\]"):
        config = default.get_config()
        del config["seed"]
        default.check_fields(config)
