"""zfjax.deconv.builtin against Captum (torch) at full size: ZFNet at 224x224, conv1..conv5, all three rules, LCN's
gradient, LCN skipped on the way back, and no LCN."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.common import torch_net
from zfjax import deconv
from zfjax.network import models


def rel_err(a, b) -> float:
    """Max |a - b| relative to max |b| (the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ---------------------------------------------------------------------------------------------------------------
# Captum on an equivalent torch ZFNet at 224x224.

@pytest.fixture(scope="module")
def zf(random_biases):
    arch = models.get("zfnet", init="fan_in")
    params = random_biases(models.init(arch, jax.random.key(0)), jax.random.key(1))
    image = jax.random.uniform(jax.random.key(2), (1, 224, 224, 3), minval=-1.0, maxval=1.0)
    return arch, params, image


CAPTUM = {"deconvnet": "NeuronDeconvolution", "guided": "NeuronGuidedBackprop", "saliency": "NeuronGradient"}
# (LCN in the net, lcn_rule): LCN's true gradient, LCN skipped on the way back (torch: identity-backward LRN), no LCN.
LCN_CASES = [(True, "gradient"), (True, "identity"), (False, "identity")]


def project_channels(arch, params, image, layer, channels, lcn_rule):
    """{rule: each channel's strongest unit projected}, vmapped over channels.

    Run eagerly: at 224x224 the per-primitive compilations are shared by all layers and rules, which costs less
    than compiling 15 whole graphs (jit == no jit is tested on a small net in test_builtin.py)."""
    return {rule: jax.vmap(lambda ch: deconv.project(arch, params, image, layer, ch, rule=rule, lcn_rule=lcn_rule))(
        channels)[:, 0] for rule in deconv.RULES}


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3", "conv4", "conv5"])
def test_matches_captum_zfnet_224(zf, layer):
    """All three rules, with LCN's gradient, with LCN skipped on the way back, and without LCN: rel. error <= 1e-4."""
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    arch, params, image = zf
    x_torch = torch.from_numpy(np.asarray(image).transpose(0, 3, 1, 2).copy())
    for lcn_on, lcn_rule in LCN_CASES:
        net_arch = models.get("zfnet", init="fan_in", lcn=lcn_on)
        net = torch_net(net_arch, params, upto=layer, lcn_backward=lcn_rule)
        unit_layer = list(net.children())[-1]
        with torch.no_grad():
            acts = net(x_torch)[0]  # (C, H, W)
        peaks = acts.flatten(1).max(1)
        order = np.argsort(-peaks.values.numpy())[: int((peaks.values > 0).sum())]
        channels = torch.tensor([order[0], order[len(order) // 2]])  # the strongest channel and a middling one
        flat = peaks.indices[channels]
        rows, cols = flat // acts.shape[2], flat % acts.shape[2]
        values = acts[channels, rows, cols].numpy()
        ours = project_channels(net_arch, params, image, layer, jnp.asarray(channels.numpy()), lcn_rule)
        batch = x_torch.expand(len(channels), -1, -1, -1).clone().requires_grad_(True)
        for rule, method in CAPTUM.items():
            # Captum seeds each neuron with 1: one neuron per copy of the image, then scale by its value.
            ref = getattr(captum_attr, method)(net, unit_layer).attribute(
                batch, neuron_selector=lambda out: out[torch.arange(len(channels)), channels, rows, cols])
            ref = ref.detach().numpy().transpose(0, 2, 3, 1) * values[:, None, None, None]
            for ch, got, want in zip(channels.tolist(), np.asarray(ours[rule]), ref):
                err = rel_err(got, want)
                assert err <= 1e-4, (layer, lcn_on, lcn_rule, rule, ch, err)
