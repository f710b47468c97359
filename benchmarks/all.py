"""Run every benchmark, each in a fresh subprocess; write `benchmarks/results.md` and the ratio bar chart.

``python -m benchmarks.all --quick`` (the reported sizes but 128 images for the top-k scan and 112x112 for the cold
start; 15-25 minutes on 2 cores: Captum projects 256 units one by one, and each benchmark first times every form
of its reference) or without ``--quick``. ``--sweep`` instead times deconv against the number of units (1, 8, 32;
and 256 without ``--quick``) and occlusion against the number of positions (patch 32, stride 32, 16, 8), zfjax and
the reference, and writes ``sweep.md`` and its plot. Each benchmark's JSON line is printed as it finishes.
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys

from benchmarks import common
from zfjax import files
from zfjax.pictures import pages, plots

HERE = pathlib.Path(__file__).resolve().parent
TARGETS = {"deconv_layer": 15.0, "deconv_units32": 12.0, "deconv_batch": 6.0, "occlusion_p48_s16": 8.0,
           "occlusion_p32_s8": 8.0, "topk_scan": 3.0, "train_step": 1.8, "train_step_small": 1.1,
           "cold_start": 1 / 1.5, "any_model_units32": 4.0}
RUNS = [("deconv", ["--mode", "layer", "--count", "256"]), ("deconv", ["--mode", "units"]),
        ("deconv", ["--mode", "batch"]), ("occlusion", ["--patch", "48", "--stride", "16"]),
        ("occlusion", ["--patch", "32", "--stride", "8"]), ("topk_scan", []), ("train_step", []), ("cold_start", []),
        ("any_model", [])]


def run(module: str, args: list[str]) -> dict:
    """`python -m benchmarks.<module> args` in a fresh process; its JSON last line (output echoed)."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], env=env, cwd=HERE.parent,
                         capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line)


def machine() -> list[tuple[str, str]]:
    """Machine and versions, for the results header."""
    import captum
    import jax
    import jaxlib
    import torch
    return [("machine", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                        f"{platform.platform()}"),
            ("load average (1, 5, 15 min)", " ".join(f"{v:.1f}" for v in os.getloadavg())),
            ("versions", f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, torch {torch.__version__}, "
                         f"captum {captum.__version__}, python {platform.python_version()}"),
            ("XLA_FLAGS", os.environ.get("XLA_FLAGS", "(set by zfjax at import)"))]


def bar_chart(results: list[dict], path: pathlib.Path) -> None:
    """Ratios against targets, log scale (cold start's target is the inverse of a slowdown)."""
    fig, ax = plots.pyplot().subplots(figsize=(8, 3.5))
    names = [r["benchmark"] for r in results]
    ax.bar(names, [r["ratio"] for r in results], color=["tab:green" if r["ratio"] >= TARGETS[r["benchmark"]]
                                                        else "tab:red" for r in results])
    ax.scatter(names, [TARGETS[n] for n in names], marker="_", s=600, color="black", label="target", zorder=3)
    ax.set_yscale("log")
    ax.set_ylabel("reference time / zfjax time")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    plots.save_figure(fig, path)


def results_table(results: list[dict]) -> str:
    """Times, ratio against the target, the roofline (arithmetic, achieved rate, fraction of the measured peak) and
    the reference's form; the projections' ratio against Captum on the whole net in its own column."""
    rows = [[r["benchmark"], f"{r['zfjax_s']:.4f}", f"{r['reference_s']:.4f}", f"{r['ratio']:.2f}x",
             f"{TARGETS[r['benchmark']]:.2f}x", "yes" if r["ratio"] >= TARGETS[r["benchmark"]] else "NO",
             f"{r['gflop']:.1f}", f"{r['gflops']:.0f}", f"{r['peak_fraction']:.0%}",
             f"{r['ratio_whole']:.2f}x" if "ratio_whole" in r else "-", r.get("reference_form", "-"),
             str(r["agree"]), f"{r['compile_s']:.1f}", f"{r['load']:.1f}"] for r in results]
    return pages.markdown_table(["benchmark", "zfjax s", "reference s", "ratio", "target", "met", "GFLOP",
                                  "zfjax GFLOP/s", "of peak", "ratio vs whole net", "reference form", "agree",
                                  "zfjax compile s", "load"], rows)


def sweep(quick: bool) -> str:
    """Time against work for deconv (units) and occlusion (positions); the plots' markdown."""
    rounds = ["--rounds", "2" if quick else "5"]
    units = [1, 8, 32] if quick else [1, 8, 32, 256]
    dec = [run("deconv", ["--mode", "units", "--count", str(n), *rounds]) for n in units]
    strides = [32, 16, 8]  # patch 32: every stride divides 224 - 32, so Captum's grid is zfjax's
    occ = [run("occlusion", ["--stride", str(s), "--patch", "32", *rounds]) for s in strides]
    fig, axes = plots.pyplot().subplots(1, 2, figsize=(9, 3.5))
    for ax, res, xs, label in ((axes[0], dec, units, "conv5 units projected"),
                               (axes[1], occ, [r["positions"] for r in occ], "occlusion positions")):
        ax.loglog(xs, [r["zfjax_s"] for r in res], "o-", label="zfjax")
        ax.loglog(xs, [r["reference_s"] for r in res], "s-", label="Captum")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds")
        ax.legend()
    fig.tight_layout()
    plots.save_figure(fig, HERE / "sweep.png")
    return "## Sweep\n\n![time against work](sweep.png)\n\n" + sweep_table(dec, units, occ) + "\n"


def sweep_table(dec: list[dict], units: list[int], occ: list[dict]) -> str:
    """Markdown rows: work (units or positions), both times, ratio, agreement."""
    rows = [[f"deconv, {n} conv5 units", *_cells(r)] for n, r in zip(units, dec)]
    rows += [[f"occlusion, patch {r['patch']} stride {r['stride']}: {r['positions']} positions", *_cells(r)]
             for r in occ]
    return pages.markdown_table(["work", "zfjax s", "reference s", "ratio", "agree"], rows)


def small_net_row(train: dict) -> dict:
    """The small net's train step (reported inside the train_step JSON) as a results row of its own."""
    gflops = train["small_gflop"] / train["small_zfjax_s"]
    return {"benchmark": "train_step_small", "zfjax_s": train["small_zfjax_s"],
            "reference_s": train["small_reference_s"], "ratio": train["small_ratio"], "agree": train["agree"],
            "compile_s": train["small_compile_s"], "gflop": train["small_gflop"], "gflops": gflops,
            "peak_fraction": gflops / train["small_peak_gflops"], "peak_gflops": train["small_peak_gflops"],
            "reference_form": train["small_reference_form"], "load": train["load"]}


def _cells(r: dict) -> list[str]:
    return [f"{r['zfjax_s']:.4f}", f"{r['reference_s']:.4f}", f"{r['ratio']:.2f}x", str(r["agree"])]


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--sweep", action="store_true", help="time against work instead of the benchmarks")
    args = parser.parse_args()
    head = "\n".join(f"- {k}: {v}" for k, v in machine())
    if args.sweep:
        files.write_text(HERE / "sweep.md", f"# zfjax sweep\n\n{head}\n\n{sweep(args.quick)}")
        return
    results = [run(m, [*a, *(["--quick"] if args.quick else [])]) for m, a in RUNS]
    results += [small_net_row(r) for r in results if r["benchmark"] == "train_step"]
    bar_chart(results, HERE / "results.png")
    mode = "quick sizes (`--quick`)" if args.quick else "full sizes"
    peaks = ", ".join(f"{r['benchmark']} {r['peak_gflops']:.0f}" for r in results if "peak_gflops" in r)
    head += (f"\n- measured peak, GFLOP/s (a large float32 convolution, the faster of XLA:CPU and torch, timed once "
             f"per round in each benchmark's process; median): {peaks}")
    gpu = HERE / "gpu_results.md"  # written by hand from a `benchmarks.gpu` run on the device machine
    files.write_text(HERE / "results.md", f"# zfjax benchmarks ({mode})\n\n{head}\n\n{results_table(results)}\n\n"
                      "![ratios](results.png)\n\n[sweep](sweep.md) (time against work):\n\n"
                      "![time against work](sweep.png)\n\n" + (gpu.read_text() if gpu.exists() else ""))


if __name__ == "__main__":
    main()
