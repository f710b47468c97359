"""Smoke test of the benchmarks on tiny sizes: each runs, agrees with its reference and prints its JSON last line."""
from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("captum")

CASES = {
    "deconv_layer": ("deconv", ["--mode", "layer", "--size", "64", "--count", "3"]),
    "deconv_units32": ("deconv", ["--mode", "units", "--size", "64", "--count", "3"]),
    "deconv_batch": ("deconv", ["--mode", "batch", "--size", "64", "--count", "2"]),
    "occlusion_p16_s16": ("occlusion", ["--size", "64", "--patch", "16", "--stride", "16"]),
    "topk_scan": ("topk_scan", ["--size", "64", "--images", "40"]),
    "cold_start": ("cold_start", ["--size", "64"]),
    "train_step": ("train_step", ["--size", "64", "--batch", "4"]),
    "any_model_units32": ("any_model", ["--size", "32", "--count", "3"]),
}


def _run(module: str, args: list[str], capsys, monkeypatch) -> dict:
    import importlib
    mod = importlib.import_module(f"benchmarks.{module}")
    monkeypatch.setattr(sys, "argv", [module, *args, "--rounds", "1"])
    mod.main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_runs_and_agrees(name, capsys, monkeypatch):
    out = _run(*CASES[name], capsys, monkeypatch)
    assert out["benchmark"] == name and out["agree"] is True, out
    assert out["zfjax_s"] > 0 and out["reference_s"] > 0
    assert out["ratio"] == pytest.approx(out["reference_s"] / out["zfjax_s"])
    assert out["gflop"] > 0 and out["gflops"] == pytest.approx(out["gflop"] / out["zfjax_s"])
    assert out["peak_fraction"] == pytest.approx(out["gflops"] / out["peak_gflops"])
    if name == "train_step":  # the small net gets its own row in results.md
        from benchmarks import all as bench_all
        small = bench_all.small_net_row(out)
        assert small["ratio"] == pytest.approx(small["reference_s"] / small["zfjax_s"])
        assert "train_step_small" in bench_all.results_table([small])


def test_results_table_marks_missed_targets():
    from benchmarks import all as bench_all
    roof = {"gflop": 10.0, "gflops": 5.0, "peak_fraction": 0.5, "agree": True, "compile_s": 1.0, "load": 1.0}
    rows = [{"benchmark": "topk_scan", "zfjax_s": 2.0, "reference_s": 1.0, "ratio": 0.5, **roof},
            {"benchmark": "occlusion_p48_s16", "zfjax_s": 1.0, "reference_s": 9.0, "ratio": 9.0, **roof}]
    lines = bench_all.results_table(rows).splitlines()
    assert "| NO |" in lines[2] and "| yes |" in lines[3] and "| 50% |" in lines[2]


def test_occlusion_refuses_a_grid_captum_does_not_share():
    from benchmarks import occlusion
    with pytest.raises(ValueError, match="does not divide"):
        occlusion.bench(patch=48, stride=32, rounds=1, per_eval=(8,), size=224)  # 176 % 32: Captum adds a square


def test_profile_names_a_layer_for_each_stage(capsys, monkeypatch):
    """On the small net: every stage kind (strided or not, pools with LCN); the tool does not depend on the net."""
    out = _run("profile", ["--arch", "small", "--batch", "4"], capsys, monkeypatch)
    assert [r["layer"] for r in out["layers"]][:3] == ["conv1", "pool1", "conv2"]
    assert all(r[k] > 0 for r in out["layers"] for k in r if k.endswith("_s") and k != "zfjax_transpose_s")
    assert all((r["zfjax_transpose_s"] is None) == r["layer"].startswith("pool") for r in out["layers"])
    transposes = sum(r["zfjax_transpose_s"] or 0.0 for r in out["layers"])
    assert out["one_image_forward_s"] > 0 and transposes > 0
    assert out["projection_floor_s"] == pytest.approx(out["one_image_forward_s"] + transposes)
    assert out["slowest_train_layer"] in [r["layer"] for r in out["layers"]]
