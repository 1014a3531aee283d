"""The floors of issue #15's unmet targets: runs the stage profiler (stage_profile.cpp) and torch's
fwd+bwd on the same layers and threads, in one run, and writes the raw numbers and the tables.

    .venv/bin/python bench/profile/floors.py --profiler build-floors/stage_profile \
        --out bench/results/2026-12-02_floors [--threads 1 2] [--repeats 9]

Needs only torch (not the blfft package): the layers and their geometry come from the profiler's
JSON, one line per layer and rate.

Floor of a stage = max(its flops at the rate its own arithmetic reaches alone (BLIS on the
stage's GEMM shapes; FFTW, measured plans, on the stage's batches of line transforms), its
compulsory bytes at the triad DRAM bandwidth); loop mixing (tiny products) at the large-sgemm
rate. Rates and bandwidth: the best of the repeats (closest to the machine's capability
under the other helpers' load). The floor of a pass (a call the public API times as a whole:
analysis x, analysis w, forward's mixing + synthesis, analysis of grad_out, and each gradient's
mixing + synthesis) is the sum of its stages' floors, but never above the pass's best measured
time; the floor of the step is the sum over its passes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# Issue #15's targets: (layer, rate) -> the ratio blfft / torch (fwd+bwd) to reach.
TARGETS = {
    ("r18 64ch 32x32", 0.0): 0.8,
    ("r18 128ch 16x16", 0.0): 0.8,
    ("r18 256ch 8x8", 0.0): 0.8,
    ("r18 512ch 4x4", 0.0): 0.8,
    ("r18 64ch 32x32", 0.5): 0.3,
    ("r18 128ch 16x16", 0.5): 0.3,
    ("r18 256ch 8x8", 0.5): 0.3,
    ("r18 512ch 4x4", 0.5): 0.3,
    ("r18 64->128 s2 32x32", 0.5): 0.8,
    ("r18 128->256 s2 16x16", 0.5): 0.8,
    ("r18 256->512 s2 8x8", 0.5): 0.8,
    ("fcn 1->128 k8 L500", 0.5): 0.8,
    ("fcn 128->256 k5 L500", 0.0): 1.0,
    ("fcn 256->128 k3 L500", 0.0): 1.0,
    ("fcn 128->256 k5 L500", 0.5): 0.4,
    ("fcn 256->128 k3 L500", 0.5): 0.4,
}


def load() -> str:
    """The 1-minute load average now (the machine is shared with other helpers' builds)."""
    return f"{os.getloadavg()[0]:.2f}"


def torch_ms(case: dict, threads: int, repeats: int) -> dict:
    """torch's fwd+bwd of the case's layer as bench.py times it (y.backward(ones), no bias)."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    n, c, f = case["batch"], case["in_channels"], case["out_channels"]
    if case["ndim"] == 1:
        x = torch.randn(n, c, case["input"][1], generator=g, requires_grad=True)
        w = torch.randn(f, c, case["kernel"][1], generator=g, requires_grad=True)

        def conv():
            return F.conv1d(x, w, None, 1, "same")  # bench.py's FCN layers
    else:
        x = torch.randn(n, c, *case["input"], generator=g, requires_grad=True)
        w = torch.randn(f, c, *case["kernel"], generator=g, requires_grad=True)

        def conv():
            return F.conv2d(x, w, None, case["stride"], case["padding"])

    times = []
    for i in range(repeats + 2):
        x.grad = w.grad = None
        t0 = time.perf_counter()
        y = conv()
        y.backward(torch.ones_like(y))
        if i >= 2:
            times.append(1e3 * (time.perf_counter() - t0))
    return {"med": statistics.median(times), "min": min(times)}


def torch_sgemm_gflops(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """torch's large sgemm (its own BLAS: MKL / oneDNN, AVX-512 here), as bench.py measures the
    machine's rate for the mixing target."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return {"med": 2 * n**3 / statistics.median(times) / 1e9, "best": 2 * n**3 / min(times) / 1e9}


def stage_floor(s: dict, machine: dict) -> float:
    """A stage's floor in ms: its flops at its shapes' BLAS rate (or the large-sgemm rate), or
    its bytes at DRAM bandwidth, whichever is longer."""
    if s["shape_gemm_flops"] > 0 and s["shape_gemm_min_ms"] > 0:
        gflops = s["shape_gemm_flops"] / s["shape_gemm_min_ms"] / 1e6
    else:
        gflops = machine["sgemm_2048_best_gflops"]
    return max(s["flops"] / gflops / 1e6, s["bytes"] / machine["triad_best_gbs"] / 1e6)


# The passes the public API times as a whole (their split into stages is partly derived, see
# stage_profile.cpp): the floor is taken per pass and never above the pass's best measured time.
PASSES = {
    "analysis x": ("analysis x",),
    "analysis w": ("analysis w",),
    "fwd: mixing + synthesis y": ("mixing fwd", "synthesis y"),
    "analysis grad_out": ("analysis grad_out",),
    "dx: mixing + synthesis dx": ("mixing dx", "synthesis dx"),
    "dw: mixing + synthesis dw": ("mixing dw", "synthesis dw"),
}


def pass_table(case: dict, machine: dict) -> dict:
    """{pass: (best measured ms, floor ms)} for the passes the case has."""
    by_name = {s["stage"]: s for s in case["stages"]}
    out = {}
    for name, stages in PASSES.items():
        present = [by_name[n] for n in stages if n in by_name]
        if not present:
            continue
        measured = sum(s["min_ms"] for s in present)
        out[name] = (measured, min(measured, sum(stage_floor(s, machine) for s in present)))
    return out


def stage_rows(case: dict, machine: dict) -> list:
    rows = []
    for s in case["stages"]:
        shape = (
            f"{s['shape_gemm_flops'] / s['shape_gemm_min_ms'] / 1e6:.1f}"
            if s["shape_gemm_flops"] > 0
            else "-"
        )
        rows.append(
            f"| {s['stage']} | {s['engine']} | {s['ms']:.2f} | {s['min_ms']:.2f} "
            f"| {s['flops'] / 1e6:.1f} | {s['flops'] / max(s['ms'], 1e-9) / 1e6:.1f} | {shape} "
            f"| {s['bytes'] / 1e6:.2f} | {s['bytes'] / max(s['ms'], 1e-9) / 1e6:.1f} "
            f"| {stage_floor(s, machine):.2f} | {s['how']} |"
        )
    return rows


def direct_flops(case: dict) -> float:
    """Real flops of direct convolution (im2col GEMMs, torch's kind) over fwd + both gradients:
    2 N F C K^2 Ho Wo per pass, three passes; Ho, Wo the strided output."""
    kh, kw = case["kernel"]
    s, p = case["stride"], case["padding"]
    h, w = case["input"]
    ho = (h + 2 * p - kh) // s + 1 if case["ndim"] == 2 else 1
    wo = (w + 2 * p - kw) // s + 1
    n, c, f = case["batch"], case["in_channels"], case["out_channels"]
    return 3.0 * 2 * n * f * c * kh * kw * ho * wo


def summarise(case: dict, machine: dict, torch_t: dict) -> dict:
    floors = {s["stage"]: stage_floor(s, machine) for s in case["stages"]}
    passes = pass_table(case, machine)
    floor = sum(f for _, f in passes.values())
    # What dominates: the pass with the most time (its best run: the medians of derived stages
    # swing with the other helpers' load), and the stage with the largest floor.
    dom = max(passes, key=lambda n: passes[n][0])
    dom_floor = max(floors, key=floors.get)
    mix_flops = sum(s["flops"] for s in case["stages"] if s["stage"].startswith("mixing"))
    # Shares from the best runs; a derived stage below zero (noise) counts as zero.
    times = {s["stage"]: max(s["min_ms"], 0.0) for s in case["stages"]}
    transform_ms = sum(t for n, t in times.items() if not n.startswith("mixing"))
    return {
        "layer": case["layer"],
        "rate": case["rate"],
        "threads": case["threads"],
        "target": TARGETS.get((case["layer"], case["rate"])),
        "blfft_ms": case["step_ms"]["med"],
        "blfft_min_ms": case["step_ms"]["min"],
        "torch_ms": torch_t["med"],
        "torch_min_ms": torch_t["min"],
        "ratio": case["step_ms"]["med"] / torch_t["med"],
        "floor_ms": floor,
        "best_ratio": floor / torch_t["min"],
        "dominant_pass": dom,
        "dominant_share": passes[dom][0] / max(sum(m for m, _ in passes.values()), 1e-9),
        "floor_uncapped_ms": sum(floors.values()),
        "dominant_floor_stage": dom_floor,
        "transform_share": transform_ms / max(sum(times.values()), 1e-9),
        "mixing_gflops_bench_metric": mix_flops / case["step_ms"]["med"] / 1e6,
        "mixing_gflops_at_floor": mix_flops / floor / 1e6,
        "spectral_flops": sum(s["flops"] for s in case["stages"]),
        "mixing_flops": mix_flops,
        "direct_flops": direct_flops(case),
        "torch_gflops": direct_flops(case) / torch_t["min"] / 1e6,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiler", required=True, help="the stage_profile binary")
    ap.add_argument("--out", required=True, help="results folder")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--layer", default="", help="only layers whose name contains this")
    ap.add_argument(
        "--render", action="store_true", help="only rewrite floors.md from OUT/floors.json"
    )
    ap.add_argument(
        "--quiet-bench",
        default=None,
        help="bench.json of a quiet 2-thread `python -m blfft.bench` run: adds its torch times and "
        "ratios, and the 1-thread floor halved against its torch time (see quiet_projection)",
    )
    ap.add_argument(
        "--combine",
        nargs="+",
        default=None,
        help="folders of earlier runs: write OUT/floors.{json,md} from their best (see combine)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        runs = [json.loads((Path(d) / "floors.json").read_text()) for d in args.combine]
        combined = combine(runs)
        (out / "floors.json").write_text(json.dumps(combined, indent=1) + "\n")
        args.render = True
    if args.render:
        saved = json.loads((out / "floors.json").read_text())
        for run in saved["runs"]:
            for case in run["cases"]:
                case["summary"] = summarise(case, run["machine"], case["torch_ms"])
                case["summary"]["load"] = case["load_before_torch"]
        render(out, saved["runs"], saved["log"], args.quiet_bench)
        return 0
    raw, log = [], []
    for threads in args.threads:
        log.append(f"profiler, {threads} thread(s): start load {load()}")
        cmd = [args.profiler, "--threads", str(threads), "--repeats", str(args.repeats)]
        if args.layer:
            cmd += ["--layer", args.layer]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        log.append(f"profiler, {threads} thread(s): end load {load()}")
        machine = lines[0]
        machine["torch_sgemm_2048_gflops"] = torch_sgemm_gflops(threads)
        torch_cache = {}  # one torch timing per layer (both rates compare against it)
        for case in lines[1:]:
            case["load_before_torch"] = load()
            if case["layer"] not in torch_cache:
                torch_cache[case["layer"]] = torch_ms(case, threads, args.repeats)
            case["torch_ms"] = torch_cache[case["layer"]]
            case["summary"] = summarise(case, machine, case["torch_ms"])
            case["summary"]["load"] = case["load_before_torch"]
            print(json.dumps(case["summary"]), flush=True)
        raw.append({"machine": machine, "cases": lines[1:]})
    (out / "floors.json").write_text(json.dumps({"runs": raw, "log": log}, indent=1) + "\n")
    render(out, raw, log, args.quiet_bench)
    return 0


def combine(runs: list) -> dict:
    """One result from several runs on a loaded machine, where other processes only ever add
    time: per case and thread count, the run whose step was fastest, whole (its stages are
    differences of its own passes, so they are not mixed across runs); torch's best time and
    the best GEMM probes and machine rates over all runs (independent measurements)."""
    merged = []
    for threads_runs in zip(*(r["runs"] for r in runs)):
        machine = dict(threads_runs[0]["machine"])
        for key in ("sgemm_2048_best_gflops", "triad_best_gbs"):
            machine[key] = max(r["machine"][key] for r in threads_runs)
        for key in ("sgemm_2048_gflops", "triad_gbs"):
            machine[key] = statistics.median(r["machine"][key] for r in threads_runs)
        ts = [r["machine"].get("torch_sgemm_2048_gflops") for r in threads_runs]
        if all(ts):
            machine["torch_sgemm_2048_gflops"] = {
                "med": statistics.median(t["med"] for t in ts),
                "best": max(t["best"] for t in ts),
            }
        cases = []
        for versions in zip(*(r["cases"] for r in threads_runs)):
            case = json.loads(json.dumps(min(versions, key=lambda v: v["step_ms"]["min"])))
            case["torch_ms"] = {
                "med": statistics.median(v["torch_ms"]["med"] for v in versions),
                "min": min(v["torch_ms"]["min"] for v in versions),
            }
            case["runs_loads"] = [v["load_before_torch"] for v in versions]
            for i, s in enumerate(case["stages"]):
                mine = [v["stages"][i] for v in versions]
                probes = [p for p in mine if p["shape_gemm_min_ms"] > 0]
                if probes:
                    fastest = min(probes, key=lambda p: p["shape_gemm_min_ms"])
                    s["shape_gemm_min_ms"] = fastest["shape_gemm_min_ms"]
                    s["shape_gemm_flops"] = fastest["shape_gemm_flops"]
            cases.append(case)
        merged.append({"machine": machine, "cases": cases})
    log = [f"combined from {len(runs)} runs"] + [line for r in runs for line in r["log"]]
    return {"runs": merged, "log": log}


def quiet_projection(raw: list, bench_json: str) -> list:
    """Table rows: the 1-thread floor halved (2 cores, BLIS serial per thread: the stage rates
    double at best) against torch's fwd+bwd in a quiet 2-thread benchmark, next to that
    benchmark's measured ratio. A projection: the floor at 2 threads measured on this loaded
    machine is in the tables below."""
    bench = json.loads(Path(bench_json).read_text())
    rows = {(r["layer"], r["impl"], round(r["rate"], 2)): r for r in bench["results"]}
    one = next(r for r in raw if r["machine"]["threads"] == 1)
    out = [
        f"## Projection to a quiet machine, 2 threads ({bench_json}: "
        f"{bench['meta']['date']}, torch sgemm {bench['meta']['sgemm_gflops']:.0f} GFLOP/s)",
        "",
        "Optimistic: it assumes blfft's floor halves on 2 cores, while torch's own time shrank "
        "1.3-1.9x from 1 to 2 threads here; the same-run ratios per thread count are below.",
        "",
        "| layer | rate | target | quiet bench ratio | quiet torch ms (2 threads) "
        "| 1-thread floor ms / 2 | ratio if the floor halved |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in one["cases"]:
        s = case["summary"]
        t = rows.get((s["layer"], "torch", 0.0))
        b = rows.get((s["layer"], "blfft", round(s["rate"], 2)))
        if not t:
            continue
        measured = f"{b['fwd_bwd_ms'] / t['fwd_bwd_ms']:.2f}" if b else "-"
        out.append(
            f"| {s['layer']} | {s['rate']} | {s['target']} | {measured} | {t['fwd_bwd_ms']:.1f} "
            f"| {s['floor_ms'] / 2:.1f} | {s['floor_ms'] / 2 / t['fwd_bwd_ms']:.2f} |"
        )
    return out + [""]


def render(out: Path, raw: list, log: list, bench_json=None) -> None:
    """floors.md: per thread count, the summary table, then each case's stages."""
    md = [
        "# Floors of issue #15's unmet targets (bench/profile/floors.py)",
        "",
        "Times: median of the repeats (min where said); load: 1-minute load average next to each "
        "case (2 cores shared with other helpers' builds). Floors: see floors.py's docstring.",
        "",
    ]
    if bench_json:
        md += quiet_projection(raw, bench_json)
    for run in raw:
        m = run["machine"]
        md += [
            f"## {m['threads']} thread(s): BLIS sgemm 2048^3 {m['sgemm_2048_gflops']:.1f} GFLOP/s "
            f"(best {m['sgemm_2048_best_gflops']:.1f}), triad {m['triad_gbs']:.1f} GB/s "
            f"(best {m['triad_best_gbs']:.1f})"
            + (
                f"; torch sgemm 2048^3 {m['torch_sgemm_2048_gflops']['med']:.1f} "
                f"(best {m['torch_sgemm_2048_gflops']['best']:.1f})"
                if "torch_sgemm_2048_gflops" in m
                else ""
            ),
            "",
            "| layer | rate | load | blfft ms | torch ms | ratio | target | floor ms "
            "| floor/torch(min) | dominant pass, best runs (share) | largest stage floor "
            "| transforms' share "
            "| mixing GFLOP/s (bench metric) | same at floor | spectral / direct flops "
            "| torch GFLOP/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for case in run["cases"]:
            s = case["summary"]
            md.append(
                f"| {s['layer']} | {s['rate']} | {s['load']} | {s['blfft_ms']:.1f} "
                f"| {s['torch_ms']:.1f} | {s['ratio']:.2f} | {s['target']} | {s['floor_ms']:.1f} "
                f"| {s['best_ratio']:.2f} | {s['dominant_pass']} ({s['dominant_share']:.0%}) "
                f"| {s['dominant_floor_stage']} | {s['transform_share']:.0%} "
                f"| {s['mixing_gflops_bench_metric']:.1f} | {s['mixing_gflops_at_floor']:.1f} "
                f"| {s['spectral_flops'] / s['direct_flops']:.2f} | {s['torch_gflops']:.1f} |"
            )
        md.append("")
        for case in run["cases"]:
            md += [
                f"### {case['layer']}, rate {case['rate']}, {case['threads']} thread(s): grid "
                f"{case['grid']}, kept {case['kept']}/{case['total']} ({case['kept_rows']} rows x "
                f"{case['kept_cols']} cols), {'taps' if case['taps'] else 'spectrum'} mixing; "
                f"step {case['step_ms']['med']:.2f} ms (min {case['step_ms']['min']:.2f}), "
                f"torch {case['torch_ms']['med']:.2f} ms, load {case['load_before_torch']}",
                "",
                "| stage | engine | ms | min ms | MFLOP | GFLOP/s | BLIS GFLOP/s on its shapes "
                "| MB | GB/s | floor ms | how |",
                "|---|---|---|---|---|---|---|---|---|---|---|",
                *stage_rows(case, m),
                "",
                "| pass | best measured ms | floor ms |",
                "|---|---|---|",
                *[f"| {n} | {v[0]:.2f} | {v[1]:.2f} |" for n, v in pass_table(case, m).items()],
                "",
            ]
    md += ["## Load log", "", *[f"- {line}" for line in log], ""]
    (out / "floors.md").write_text("\n".join(md))


if __name__ == "__main__":
    raise SystemExit(main())
