"""Ablations (Table 3): variant configs, width scaling, and the driver end to end on tiny Fashion-MNIST."""
import json

import pytest

from experiments import ablations as ablations_exp
from experiments.configs import ablation, ablations as ablations_config, fashion_mnist
from zfjax.data import load as load_data
from zfjax.network import models
from zfjax.training import ablations, train


def test_scale_overrides_keeps_the_papers_ratios():
    base = fashion_mnist.get_config()
    small = models.get(base.model, **base.model_overrides.to_dict())  # conv3-5 64 maps, fc 256
    zfnet = models.get("zfnet")  # conv3-5 384, 384, 256; fc 4096
    wide = ablations.scale_overrides(ablation.VARIANTS["conv345_wide"][1], zfnet, small)
    assert wide == {"conv3": {"features": round(512 * 64 / 384)}, "conv4": {"features": round(1024 * 64 / 384)},
                    "conv5": {"features": 512 * 64 // 256}}
    assert ablations.scale_overrides({"fc6": {"features": 8192, "dropout": 0.3}}, zfnet, small) == \
        {"fc6": {"features": 512, "dropout": 0.3}}
    assert ablations.scale_overrides(ablation.VARIANTS["fc2048"][1], zfnet, zfnet) == ablation.VARIANTS["fc2048"][1]
    with pytest.raises(ValueError, match="both nets need"):
        ablations.scale_overrides({"fc6": {"features": 8}}, zfnet, models.get("small", remove=("fc6",)))


def test_variant_config_removes_layers_and_their_overrides():
    base = fashion_mnist.get_config()
    config = ablations.variant_config(base, (("conv3", "conv4"), {"conv5": {"kernel": 5}, "fc6": {"features": 7}}))
    assert base.remove == () and base.model_overrides.to_dict()["conv5"] == {"features": 64}  # base untouched
    assert tuple(config.remove) == ("conv3", "conv4")
    assert config.model_overrides.to_dict() == {"conv5": {"features": 64, "kernel": 5}, "fc6": {"features": 7}}
    arch = train.build_arch(config, load_data(config))
    assert [c.name for c in arch.convs] == ["conv1", "conv2", "conv5"] and arch.conv("conv5").kernel == 5
    with pytest.raises(ValueError, match="unknown"):
        ablations.check_variants(["base", "no_fc9"], ablation.VARIANTS)
    assert ablations.error_row("x", 0.8, 0.75, 0.981) == ["x", "20.0", "25.0", "1.9"]


def test_ablations_script_end_to_end_tiny(tmp_path):
    config = ablations_config.get_config("tiny")
    with config.unlocked():
        config.variants = ("base", "no_conv34_fc67")
    results = ablations_exp.run(config, tmp_path)
    rows = {r[0]: r for r in results["table"]["rows"]}
    assert set(rows) == {"base", "no_conv34_fc67"}
    assert rows["no_conv34_fc67"][1] == "conv3,conv4,fc6,fc7" and rows["base"][7:] == ["33.1", "38.4", "16.5"]
    for name in rows:
        v = results["variants"][name]
        assert v["step"] == 512 // 32  # one epoch of the tiny config
        assert all(0 <= v[k] <= 1 for k in ("train_top1", "val_top1", "val_top5")) and v["val_top5"] >= v["val_top1"]
        arch = train.build_arch(ablations.variant_config(config.base, (v["remove"], v["overrides"])),
                                load_data(config.base))
        assert v["params"] == models.count_params(arch)
        assert (tmp_path / name / "checkpoints").is_dir()
    assert results["variants"]["no_conv34_fc67"]["params"] < results["variants"]["base"]["params"]
    assert json.loads((tmp_path / "results.json").read_text())["table"] == results["table"]
    assert (tmp_path / "errors.png").is_file() and "Table 3" in (tmp_path / "index.html").read_text()
