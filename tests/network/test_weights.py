"""Weight import/export: a torch AlexNet written like torchvision's gives the same logits in zfjax."""
import jax
import numpy as np
import pytest

from zfjax.network import models, weights

torch = pytest.importorskip("torch")
nn = torch.nn


def torchvision_alexnet() -> "nn.Module":
    """torchvision's AlexNet, module for module (torchvision itself does not import beside this torch)."""
    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(True), nn.Dropout(0.5),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    net = AlexNet().eval()
    with torch.no_grad():  # scale so that every layer is active and logits are not tiny
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
    return net


@pytest.fixture(scope="module")
def alexnet_and_logits():
    net = torchvision_alexnet()
    x = np.random.default_rng(0).normal(0, 1, (2, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.tensor(x).permute(0, 3, 1, 2)).numpy()
    return net, x, ref


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_torchvision_alexnet_same_logits(tmp_path, alexnet_and_logits, suffix):
    net, x, ref = alexnet_and_logits
    path = tmp_path / ("alexnet" + suffix)
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        from safetensors.numpy import save_file
        save_file({k: v.numpy() for k, v in net.state_dict().items()}, str(path))
    arch = models.get("alexnet_torchvision")
    params = weights.load(path, arch)
    logits = np.asarray(jax.jit(models.apply, static_argnums=0)(arch, params, x).logits)
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # export in the same layout gives back torch's exact tensors
    state = weights.to_torch(params, arch, layout="torchvision")
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(state[k], v.numpy(), err_msg=k)


def test_named_layout_round_trip(tmp_path):
    arch = models.get("zfnet", input_shape=(64, 64, 3), num_classes=5)
    params = models.init(arch, jax.random.key(0))
    weights.save(params, tmp_path / "zf.safetensors", arch)
    back = weights.load(tmp_path / "zf.safetensors", arch)
    for name in params:
        for k in ("w", "b"):
            np.testing.assert_array_equal(back[name][k], params[name][k])
    assert not list(tmp_path.glob("*.tmp"))


def test_named_layout_fc6_uses_torch_flatten_order():
    """A torch net flattening NCHW with our exported fc6 gives our logits (checks the row permutation)."""
    arch = models.get("zfnet", input_shape=(64, 64, 3), num_classes=5, lcn=False, init="fan_in",
                      remove=("fc7",))
    params = models.init(arch, jax.random.key(1))
    x = np.random.default_rng(1).normal(0, 1, (1, 64, 64, 3)).astype(np.float32)
    out = models.apply(arch, params, x)
    pool5 = torch.tensor(np.asarray(out.acts["pool5"])).permute(0, 3, 1, 2)  # NCHW as torch holds it
    state = weights.to_torch(params, arch)
    fc6 = torch.relu(torch.flatten(pool5, 1) @ torch.tensor(state["fc6.weight"]).T + torch.tensor(state["fc6.bias"]))
    logits = fc6 @ torch.tensor(state["fc8.weight"]).T + torch.tensor(state["fc8.bias"])
    np.testing.assert_allclose(logits.numpy(), out.logits, rtol=1e-4, atol=1e-5)


def test_bad_weights(tmp_path):
    arch = models.get("alexnet_torchvision")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        weights.load(tmp_path / "nope.safetensors", arch)
    with pytest.raises(ValueError, match="unknown weights format '.npz'"):
        (tmp_path / "w.npz").write_bytes(b"")
        weights.load(tmp_path / "w.npz", arch)
    small = models.get("small")
    state = weights.to_torch(models.init(small, jax.random.key(0)), small)
    with pytest.raises(ValueError, match=r"params\['conv1'\]\['w'\] has shape \(5, 5, 1, 32\), but zfnet needs"):
        weights.from_torch(state, models.get("zfnet"))
    del state["fc7.bias"]
    with pytest.raises(ValueError, match="no 'fc7.bias'"):
        weights.from_torch(state, small)
    with pytest.raises(ValueError, match="use arch 'alexnet_torchvision'"):
        weights.from_torch({"features.0.weight": 0}, models.get("zfnet"))
