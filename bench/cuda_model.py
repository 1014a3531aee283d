"""Modelled H200 time of blfft's CUDA training step (fwd + bwd) next to cuDNN's, without a GPU.

Issue #11 asks, where no GPU is at hand, for the modelled time of the ResNet-18 32x32 and 16x16
layers at batch 32 and 128 next to cuDNN's. The inputs are the emulated traffic and launch counts
of ``python -m blfft.bench --cuda-traffic`` (bench/results/cuda_traffic.json, batch 32) and the
same at batch 128 (cuda_traffic_b128.json, made by ``--measure``, which runs blfft_cuda_traffic
``--batch 128`` on the 32x32 and 16x16 ResNet-18 layers; a few minutes).

    python bench/cuda_model.py [--results bench/results] [--measure]

writes <results>/cuda_model.md. The model, per pass (forward, input gradient, weight gradient;
weight "changed", as in training, where its spectrum or its taps are read afresh every step):

    blfft  = max(global_bytes / BW, transform_flops / FP32 + mix_flops / R_mix) + launches * L
    cuDNN  = max(compulsory_bytes / BW, direct_flops / TF32) + 1 * L

global_bytes, launches, transform_flops (the fused DFT kernels, CUDA cores) and mix_flops (own
kernel: 6 per complex product; cuBLAS: 8) are the records' own; R_mix is the TF32 tensor-core rate
where the record's engine is cuBLAS (TF32 allowed on both sides, torch's default), else FP32.
direct_flops = 2 N F Ho Wo (C / groups) KH KW, the same for all three passes; cuDNN is credited
with moving only the compulsory bytes (x, w, y or their gradients) and one launch: a lower bound
for cuDNN, so the ratio is conservative for blfft.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# NVIDIA H200 SXM datasheet (nvidia.com/en-us/data-center/h200): HBM3e 4.8 TB/s (4.0 taken as
# reachable by streaming kernels), TF32 tensor core 989 TFLOP/s with sparsity = 495 dense,
# FP32 67 TFLOP/s. About 4 us per kernel launch (launch + tail of a short kernel).
BW = 4.0e12
TF32 = 495e12
FP32 = 67e12
LAUNCH = 4e-6

LAYERS = ("r18 64ch 32x32", "r18 128ch 16x16", "r18 64->128 s2 32x32", "r18 128->256 s2 16x16")
PASSES = ("forward", "input_grad", "weight_grad")


def shape(name: str):
    """(C, F, H, stride) of a ResNet-18 layer name of bench/cuda_traffic.cpp (3x3, padding 1)."""
    m = re.match(r"r18 (\d+)(?:->(\d+))?(?:ch)? (?:s(\d) )?(\d+)x\d+$", name)
    if not m:
        raise ValueError(f"not a ResNet-18 layer name: {name}")
    c = int(m.group(1))
    f = int(m.group(2) or c)
    return c, f, int(m.group(4)), int(m.group(3) or 1)


def blfft_seconds(r: dict) -> float:
    rate_mix = TF32 if r.get("engine") == "cublas" and r.get("tf32", True) else FP32
    compute = r["transform_flops"] / FP32 + r["mix_flops"] / rate_mix
    return max(r["global_bytes"] / BW, compute) + r["launches"] * LAUNCH


def cudnn_seconds(r: dict) -> float:
    c, f, h, s = shape(r["layer"])
    ho = (h + s - 1) // s
    flops = 2.0 * r["batch"] * f * ho * ho * c * 9
    return max(r["compulsory_bytes"] / BW, flops / TF32) + LAUNCH


def table(records) -> str:
    by = {}
    for r in records:
        if r["layer"] in LAYERS and r.get("weight", "changed") == "changed":
            by.setdefault((r["layer"], r["batch"], r["rate"]), {})[r["pass"]] = r
    lines = [
        "| layer | batch | rate | blfft MB | launches | blfft us | bound | engines | cuDNN us "
        "| blfft / cuDNN |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for (layer, batch, rate), ps in sorted(
        by.items(), key=lambda kv: (LAYERS.index(kv[0][0]), kv[0][1], kv[0][2])
    ):
        if set(ps) != set(PASSES):
            continue
        rs = [ps[p] for p in PASSES]
        tb = sum(blfft_seconds(r) for r in rs)
        tc = sum(cudnn_seconds(r) for r in rs)
        mem = sum(r["global_bytes"] / BW for r in rs)
        comp = sum(
            r["transform_flops"] / FP32
            + r["mix_flops"] / (TF32 if r.get("engine") == "cublas" else FP32)
            for r in rs
        )
        lines.append(
            f"| {layer} | {batch} | {rate:g} | {sum(r['global_bytes'] for r in rs) / 1e6:.1f} "
            f"| {sum(r['launches'] for r in rs)} | {tb * 1e6:.0f} "
            f"| {'memory' if mem >= comp else 'compute'} "
            f"| {'/'.join(r.get('engine', 'own') for r in rs)} | {tc * 1e6:.0f} | {tb / tc:.2f} |"
        )
    return "\n".join(lines) + "\n"


def measure(results: Path) -> None:
    exe = os.environ.get("BLFFT_CUDA_TRAFFIC") or max(
        Path(__file__).resolve().parents[1].glob("build*/tests/cpp/blfft_cuda_traffic"),
        key=lambda p: p.stat().st_mtime,
    )
    out = results / "cuda_traffic_b128.json"
    records = []
    for maps in ("32x32", "16x16"):  # the layers modelled (LAYERS)
        subprocess.run(
            [str(exe), "--batch", "128", "--layers", maps, "--out", str(out)], check=True
        )
        records += json.loads(out.read_text())
    out.write_text(json.dumps(records, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="bench/results")
    ap.add_argument(
        "--measure",
        action="store_true",
        help="first run blfft_cuda_traffic at batch 128 (cuda_traffic_b128.json)",
    )
    args = ap.parse_args(argv)
    results = Path(args.results)
    if args.measure:
        measure(results)
    records = []
    for name in ("cuda_traffic.json", "cuda_traffic_b128.json"):
        p = results / name
        if p.is_file():
            records += json.loads(p.read_text())
        else:
            print(f"cuda_model: {p} missing (batch 128: run with --measure)", file=sys.stderr)
    missing = [r for r in records if "transform_flops" not in r]
    if missing:
        print(
            "cuda_model: records without flops (re-run python -m blfft.bench --cuda-traffic)",
            file=sys.stderr,
        )
        return 2
    text = (
        "# Modelled H200 time of a training step (forward + input grad + weight grad)\n\n"
        "Made by `python bench/cuda_model.py --measure` from the emulated traffic "
        "(`cuda_traffic.json`, batch 32; `cuda_traffic_b128.json`, batch 128), weight changed "
        "(training), TF32 allowed on both sides. Model (bench/cuda_model.py's docstring): per pass "
        f"max(bytes / {BW / 1e12:g} TB/s, flops / rate) + launches x {LAUNCH * 1e6:g} us; "
        f"rates: TF32 tensor cores {TF32 / 1e12:g} TFLOP/s (cuBLAS mixing, cuDNN), FP32 CUDA cores "
        f"{FP32 / 1e12:g} TFLOP/s (the fused transforms, the own mixing kernel); H200 SXM "
        "datasheet figures (HBM3e 4.8 TB/s peak, 4.0 taken as reachable). cuDNN is credited with "
        "the compulsory bytes only and one launch a pass (a lower bound). Engines: forward / "
        "input grad / weight grad mixing.\n\n" + table(records)
    )
    (results / "cuda_model.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
