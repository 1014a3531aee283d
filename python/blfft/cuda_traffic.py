"""Global-memory traffic and launches of the CUDA pipeline per pass, measured without a GPU.

``python -m blfft.bench --cuda-traffic [--quick] [--out bench/results]`` runs the C++ tool
``blfft_cuda_traffic`` (bench/cuda_traffic.cpp, built with the C++ tests where the cuFFT
stand-ins are: ``build*/tests/cpp/blfft_cuda_traffic``, or the path in ``$BLFFT_CUDA_TRAFFIC``).
It runs the CUDA backend's own pipeline and kernels in the CPU emulation and counts, per launch,
the bytes of the distinct global addresses read and written (issue #11), for the ResNet-18 and FCN
layers at rates 0 / 0.5 / 0.75, passes forward / input_grad / weight_grad, with the weight changed
since its spectrum was made and unchanged. Writes ``<out>/cuda_traffic.json`` (a list of records
with ``layer``, ``rate``, ``pass``, ``weight``, ``launches``, ``global_bytes``,
``compulsory_bytes``, ``engine``, ...) and ``<out>/cuda_traffic.md`` (the table); ``--quick``
writes ``cuda_traffic_quick.*`` instead. The mixing engine of each pass is the one the plan's rule
picks at the layer's batch with TF32 allowed (torch's default ``cudnn.allow_tf32``); the same
cases with the mixing forced onto cuBLAS go to ``<out>/cuda_traffic_cublas.json`` and a second
table in the .md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

EXE = "blfft_cuda_traffic"

# Issue #11's targets, on every ResNet-18 stride-1 layer at rate 0.5, weight changed or not.
TARGET_LAUNCHES = 4
TARGET_RATIO = 3.0


def find_executable(root: Optional[Path] = None) -> Path:
    """The traffic tool: $BLFFT_CUDA_TRAFFIC, else the newest build*/tests/cpp/blfft_cuda_traffic
    under the repository root (the current folder or the one this package lies in)."""
    env = os.environ.get("BLFFT_CUDA_TRAFFIC")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"$BLFFT_CUDA_TRAFFIC={env} is not a file")
        return p
    roots = [root] if root else [Path.cwd(), Path(__file__).resolve().parents[2]]
    found: List[Path] = []
    for r in roots:
        found += [p for p in r.glob(f"build*/tests/cpp/{EXE}") if p.is_file()]
    if not found:
        raise FileNotFoundError(
            f"{EXE} not found under {', '.join(str(r) for r in roots)}/build*/tests/cpp: build it "
            f"with the C++ tests (cmake --build <build> --target {EXE}; it needs cufft.h for the "
            "cuFFT stand-ins, see tools/setup.sh) or set $BLFFT_CUDA_TRAFFIC to its path"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def markdown(records: List[dict]) -> str:
    """One row per layer, rate and pass: launches and MB with the weight changed / unchanged."""
    rows = {}
    for r in records:
        key = (r["layer"], r["rate"], r["pass"])
        rows.setdefault(key, {})[r.get("weight", "changed")] = r
    lines = [
        "| layer | rate | pass | launches | global MB | compulsory MB | ratio "
        "| launches (w unchanged) | global MB (w unchanged) | ratio (w unchanged) | engine |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (layer, rate, pas), by in rows.items():
        c, u = by.get("changed"), by.get("unchanged") or by.get("changed")
        mb, cmb = c["global_bytes"] / 1e6, c["compulsory_bytes"] / 1e6
        lines.append(
            f"| {layer} | {rate:g} | {pas} | {c['launches']} | {mb:.1f} | {cmb:.1f} "
            f"| {mb / cmb:.1f} | {u['launches']} | {u['global_bytes'] / 1e6:.1f} "
            f"| {u['global_bytes'] / u['compulsory_bytes']:.1f} "
            f"| {c.get('engine', 'own')} / {u.get('engine', 'own')} |"
        )
    return "\n".join(lines) + "\n"


def target_misses(records: List[dict]) -> List[str]:
    """Issue #11's targets not met (ResNet-18 stride-1 layers, rate 0.5)."""
    misses = []
    for r in records:
        if not r["layer"].startswith("r18") or " s2 " in r["layer"] or r["rate"] != 0.5:
            continue
        ratio = r["global_bytes"] / r["compulsory_bytes"]
        if r["launches"] > TARGET_LAUNCHES or ratio > TARGET_RATIO:
            misses.append(
                f"{r['layer']} {r['pass']} (weight {r.get('weight', '-')}): "
                f"{r['launches']} launches, {ratio:.1f}x compulsory"
            )
    return misses


def main(quick: bool = False, out: str = "bench/results", extra: Optional[List[str]] = None) -> int:
    try:
        exe = find_executable()
    except FileNotFoundError as e:
        print(f"blfft.bench --cuda-traffic: {e}", file=sys.stderr)
        return 2
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "cuda_traffic_quick" if quick else "cuda_traffic"
    blas_json = folder / f"{stem}_cublas.json"
    cmd = [str(exe), "--out", str(folder / f"{stem}.json"), "--out-cublas", str(blas_json)]
    cmd += ["--quick"] if quick else []
    cmd += extra or []
    print("running", " ".join(cmd), flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        print(f"blfft.bench --cuda-traffic: {exe} failed (exit {done.returncode})", file=sys.stderr)
        return done.returncode
    records = json.loads((folder / f"{stem}.json").read_text())
    (folder / f"{stem}.json").write_text(json.dumps(records, indent=1) + "\n")
    blas = json.loads(blas_json.read_text())
    blas_json.write_text(json.dumps(blas, indent=1) + "\n")
    table = markdown(records)
    text = (
        "Mixing engine per pass by the plan's rule (TF32 allowed; engine column: weight changed /"
        " unchanged):\n\n" + table + "\nThe same with the mixing forced onto cuBLAS (stacked "
        "real GEMMs):\n\n" + markdown(blas)
    )
    (folder / f"{stem}.md").write_text(text)
    print(text)
    misses = target_misses(records)
    print(
        f"issue #11 targets (<= {TARGET_LAUNCHES} launches, <= {TARGET_RATIO:g}x compulsory, "
        f"ResNet-18 stride-1, rate 0.5): " + ("met" if not misses else f"{len(misses)} missed")
    )
    for m in misses:
        print("  missed:", m)
    print(f"wrote {folder / (stem + '.json')}, {blas_json}, {folder / (stem + '.md')}")
    return 0
