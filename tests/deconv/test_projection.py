"""deconv.project_fn / apply_rule on models zfjax does not know: Flax linen (VGG- and ResNet-style), Flax NNX and a
plain-lax function, each against Captum on a torch twin with the same weights (all three rules)."""
from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.attr import NeuronDeconvolution, NeuronGradient, NeuronGuidedBackprop
from flax import nnx
from jax import lax

from zfjax import deconv
from zfjax.deconv import rules
from zfjax.network import adapters

CAPTUM = {"deconvnet": NeuronDeconvolution, "guided": NeuronGuidedBackprop, "saliency": NeuronGradient}
torch.set_num_threads(2)
warnings.filterwarnings("ignore", message="Setting backward hooks")


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a))


def _conv_weight(kernel) -> torch.Tensor:
    return _t(np.asarray(kernel).transpose(3, 2, 0, 1))  # HWIO -> OIHW


def _rel_err(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-30))


def _captum(rule, net, module, x: np.ndarray, channel: int, position) -> np.ndarray:
    """Captum's projection of (channel, position) of `module`'s output (position None: each image's argmax), seeded
    with 1 and multiplied by the unit's value, NHWC."""
    acts = {}
    handle = module.register_forward_hook(lambda m, i, o: acts.setdefault("out", o.detach()))
    xt = _t(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        net(xt)
    handle.remove()
    fmap = acts["out"][:, channel]  # (N, h, w)
    out = []
    for n in range(len(x)):
        h, w = divmod(int(fmap[n].argmax()), fmap.shape[2]) if position is None else position
        attr = CAPTUM[rule](net, module).attribute(xt[n:n + 1].clone().requires_grad_(True),
                                                   neuron_selector=(channel, h, w))
        out.append(attr[0].permute(1, 2, 0).numpy() * float(fmap[n, h, w]))
    return np.stack(out)


# --- Flax linen, VGG-style: nn.relu and jnp.maximum(x, 0.) -------------------------------------------------------


class Vgg(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(x))
        self.sow("intermediates", "relu1", x)
        x = jnp.maximum(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(x), 0.0)
        self.sow("intermediates", "relu2", x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(12, (3, 3), padding=((1, 1), (1, 1)), name="conv3")(x))
        self.sow("intermediates", "relu3", x)
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        x = jnp.maximum(0.0, nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), name="conv4")(x))
        self.sow("intermediates", "relu4", x)
        return nn.Dense(5, name="fc")(x.reshape(x.shape[0], -1))


class TorchVgg(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        tnn = torch.nn
        self.convs = tnn.ModuleList()
        for name in ("conv1", "conv2", "conv3", "conv4"):
            p = params[name]
            conv = tnn.Conv2d(p["kernel"].shape[2], p["kernel"].shape[3], 3, padding=1)
            conv.weight.data, conv.bias.data = _conv_weight(p["kernel"]), _t(p["bias"])
            self.convs.append(conv)
        self.relus = tnn.ModuleList([tnn.ReLU() for _ in range(4)])
        self.pool1, self.pool2 = tnn.MaxPool2d(2, 2), tnn.MaxPool2d(3, 2, padding=1)

    def forward(self, x):
        x = self.relus[1](self.convs[1](self.relus[0](self.convs[0](x))))
        x = self.pool2(self.relus[2](self.convs[2](self.pool1(x))))
        return self.relus[3](self.convs[3](x))


# --- Flax linen, ResNet-style: BatchNorm (inference), residual adds, ReLU as jax.nn.relu, where(), maximum(0, x) --


class Block(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        y = nn.Conv(self.features, (3, 3), (self.stride, self.stride), padding=pad, use_bias=False, name="conv1")(x)
        y = nn.BatchNorm(use_running_average=True, name="bn1")(y)
        y = jnp.where(y > 0, y, 0)
        y = nn.BatchNorm(use_running_average=True, name="bn2")(
            nn.Conv(self.features, (3, 3), padding=pad, use_bias=False, name="conv2")(y))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = nn.BatchNorm(use_running_average=True, name="bn_short")(
                nn.Conv(self.features, (1, 1), (self.stride, self.stride), use_bias=False, name="short")(x))
        out = jnp.maximum(0.0, x + y)
        self.sow("intermediates", "out", out)
        return out


class ResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem")(x)
        x = jax.nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        x = Block(8, name="block1")(x)
        x = Block(12, 2, name="block2")(x)
        return nn.Dense(5, name="fc")(x.mean((1, 2)))


def _randomize_batch_stats(variables, seed: int = 3):
    """Non-trivial BatchNorm statistics and affine parameters, so the twin test exercises them."""
    rng = np.random.default_rng(seed)
    stats = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape) if a.ndim else a, jnp.float32),
                         variables["batch_stats"])
    stats = jax.tree_util.tree_map_with_path(
        lambda path, a: a - 0.7 if path[-1].key == "mean" else a, stats)
    params = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), jnp.float32) if path[-1].key == "scale" else
        jnp.asarray(rng.normal(0, 0.1, a.shape), jnp.float32) if path[-1].key == "bias" else a, variables["params"])
    return {"params": params, "batch_stats": stats}


def _torch_bn(p, stats) -> torch.nn.BatchNorm2d:
    bn = torch.nn.BatchNorm2d(len(p["scale"]), eps=1e-5)
    bn.weight.data, bn.bias.data = _t(p["scale"]), _t(p["bias"])
    bn.running_mean.data, bn.running_var.data = _t(stats["mean"]), _t(stats["var"])
    return bn.eval()


def _torch_conv(kernel, stride: int = 1, padding: int = 1) -> torch.nn.Conv2d:
    k = np.asarray(kernel)
    conv = torch.nn.Conv2d(k.shape[2], k.shape[3], k.shape[0], stride, padding, bias=False)
    conv.weight.data = _conv_weight(k)
    return conv


class TorchBlock(torch.nn.Module):
    def __init__(self, p, s, stride):
        super().__init__()
        self.conv1, self.bn1 = _torch_conv(p["conv1"]["kernel"], stride), _torch_bn(p["bn1"], s["bn1"])
        self.conv2, self.bn2 = _torch_conv(p["conv2"]["kernel"]), _torch_bn(p["bn2"], s["bn2"])
        self.relu1, self.relu = torch.nn.ReLU(), torch.nn.ReLU()
        self.short = torch.nn.Sequential(_torch_conv(p["short"]["kernel"], stride, 0),
                                         _torch_bn(p["bn_short"], s["bn_short"])) if "short" in p else None

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu((x if self.short is None else self.short(x)) + y)


class TorchResNet(torch.nn.Module):
    def __init__(self, variables):
        super().__init__()
        p, s = variables["params"], variables["batch_stats"]
        self.stem, self.bn, self.relu = _torch_conv(p["stem"]["kernel"]), _torch_bn(p["bn"], s["bn"]), torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(3, 2, padding=1)
        self.block1 = TorchBlock(p["block1"], s["block1"], 1)
        self.block2 = TorchBlock(p["block2"], s["block2"], 2)

    def forward(self, x):
        return self.block2(self.block1(self.pool(self.relu(self.bn(self.stem(x))))))


# --- Flax NNX ---------------------------------------------------------------------------------------------------


class NnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.conv2 = nnx.Conv(8, 12, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), rngs=rngs)
        self.head = nnx.Linear(12, 5, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv1(x))
        self.sow(nnx.Intermediate, "relu1", x)
        x = nnx.max_pool(x, (2, 2), (2, 2))
        x = nnx.relu(self.conv2(x))
        self.sow(nnx.Intermediate, "relu2", x)
        return self.head(x.mean((1, 2)))


class TorchNnx(torch.nn.Module):
    def __init__(self, model: NnxNet):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 12, 3, stride=2, padding=1)
        for conv, src in ((self.conv1, model.conv1), (self.conv2, model.conv2)):
            conv.weight.data, conv.bias.data = _conv_weight(src.kernel[...]), _t(src.bias[...])
        self.relu1, self.relu2, self.pool = torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2)

    def forward(self, x):
        return self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))


# --- plain lax: stride-2 conv, reduce_window max with padding, ReLU as where(x > 0, x, 0) ------------------------


def lax_net(params, x):
    dn = ("NHWC", "HWIO", "NHWC")
    y = lax.conv_general_dilated(x, params["w1"], (2, 2), ((2, 2), (2, 2)), dimension_numbers=dn) + params["b1"]
    y = jnp.where(y > 0, y, 0.0)
    y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = lax.conv_general_dilated(y, params["w2"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn) + params["b2"]
    return jnp.maximum(y, jnp.zeros_like(y))


class TorchLax(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 6, 5, stride=2, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 10, 3, padding=1)
        for conv, w, b in ((self.conv1, "w1", "b1"), (self.conv2, "w2", "b2")):
            conv.weight.data, conv.bias.data = _conv_weight(params[w]), _t(params[b])
        self.relu1, self.relu2, self.pool = torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, padding=1)

    def forward(self, x):
        return self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))


# --- fixtures and cases -----------------------------------------------------------------------------------------

SHAPE = (2, 24, 24, 3)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def cases(images):
    """name -> (fn: x -> map, torch net, torch module whose output is the map)."""
    x = jnp.asarray(images)
    vgg = Vgg()
    v = vgg.init(jax.random.key(0), x)
    tv = TorchVgg(v["params"])
    res = ResNet()
    r = _randomize_batch_stats(res.init(jax.random.key(1), x))
    tr = TorchResNet(r)
    nm = NnxNet(nnx.Rngs(2))
    tn = TorchNnx(nm)
    keys = jax.random.split(jax.random.key(3), 4)
    lp = {"w1": 0.3 * jax.random.normal(keys[0], (5, 5, 3, 6)), "b1": 0.1 * jax.random.normal(keys[1], (6,)),
          "w2": 0.3 * jax.random.normal(keys[2], (3, 3, 6, 10)), "b2": 0.1 * jax.random.normal(keys[3], (10,))}
    tl = TorchLax(lp)

    def linen(model, variables, name):
        fn, variables = adapters.features(model, name, variables, x=x)
        return lambda x: fn(variables, x)

    def nnx_point(name):
        fn, state = adapters.features(nm, name, x=x)
        return lambda x: fn(state, x)

    return {
        "vgg/relu2": (linen(vgg, v, "relu2"), tv, tv.relus[1]),
        "vgg/relu4": (linen(vgg, v, "relu4"), tv, tv.relus[3]),
        "resnet/block1": (linen(res, r, "block1/out"), tr, tr.block1.relu),
        "resnet/block2": (linen(res, r, "block2/out"), tr, tr.block2.relu),
        "nnx/relu2": (nnx_point("relu2"), tn, tn.relu2),
        "lax": (lambda x: lax_net(lp, x), tl, tl.relu2),
    }


@pytest.mark.parametrize("crop", [True, False], ids=["cropped", "whole"])
@pytest.mark.parametrize("rule", rules.RULES)
@pytest.mark.parametrize("case", ["vgg/relu2", "vgg/relu4", "resnet/block1", "resnet/block2", "nnx/relu2", "lax"])
def test_projections_match_captum_on_torch_twins(cases, images, case, rule, crop):
    fn, net, module = cases[case]
    acts = np.asarray(fn(jnp.asarray(images)))
    shape = acts.shape
    channel = int(np.argmax(acts.max(axis=(1, 2)).min(0)))  # alive in every image
    for position in (None, (shape[1] // 2, shape[2] - 2)):
        ours = jax.jit(lambda x: deconv.project_fn(fn, x, channel, position, rule=rule, crop=crop))(
            jnp.asarray(images))
        want = _captum(rule, net, module, images, channel, position)
        assert np.abs(want).max() > 0, "a dead unit tests nothing"
        assert _rel_err(ours, want) <= 1e-4, (case, rule, position, _rel_err(ours, want))


def test_twins_agree_in_the_forward_pass(cases, images):
    for name, (fn, net, module) in cases.items():
        acts = {}
        handle = module.register_forward_hook(lambda m, i, o: acts.setdefault("out", o.detach()))
        with torch.no_grad():
            net(_t(images.transpose(0, 3, 1, 2)))
        handle.remove()
        assert _rel_err(fn(jnp.asarray(images)), acts["out"].permute(0, 2, 3, 1).numpy()) <= 1e-5, name
