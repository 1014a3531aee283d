"""Numerical behaviour of blfft against torch's convolution (README, "Numerical behaviour").

    .venv/bin/python bench/numerics.py [--json bench/results/numerics.json]

Measures, on the CPU backend:

1. Rounding: the float32 error of blfft and of torch's own convolution (oneDNN) against a float64
   oracle (torch's convolution in float64 on the same float32 inputs), for the output, the input
   gradient and the weight gradient of a few wide layers at rate 0: relative l2 error
   ||r - oracle|| / ||oracle||. At rate 0.5 (no torch counterpart) the float32 error of blfft
   against blfft in float64 (the same band-limited operator).
2. The float32 range: the smallest input scale (10^e, e in steps of 0.25) at which an output
   becomes non-finite, for blfft and for torch, weights ~ N(0, 1/fan_in).
3. Non-finite inputs: how far one NaN spreads (fraction of the output map, per image).

Inputs ~ N(0, 1), weights ~ N(0, 1/fan_in), output gradient ~ N(0, 1); seed 0; batch 4.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

import blfft
import blfft.functional as BF

# name, ndim, x shape, w shape, padding
LAYERS = [
    ("ResNet-18 64ch 32x32", 2, (4, 64, 32, 32), (64, 64, 3, 3), 1),
    ("ResNet-18 256ch 8x8", 2, (4, 256, 8, 8), (256, 256, 3, 3), 1),
    ("ResNet-18 512ch 4x4", 2, (4, 512, 4, 4), (512, 512, 3, 3), 1),
    ("FCN 256->128 k3 L=500", 1, (4, 256, 500), (128, 256, 3), 1),
    ("FCN 128->256 k5 L=500", 1, (4, 128, 500), (256, 128, 5), 2),
    ("FCN 1->128 k8 L=500", 1, (4, 1, 500), (128, 1, 8), 4),
]


def _data(xs, ws, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(xs, generator=g)
    fan_in = math.prod(ws[1:])
    w = torch.randn(ws, generator=g) / math.sqrt(fan_in)
    return x, w


def _fwd_bwd(conv, x, w, gy, **kw):
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = conv(xr, wr, **kw)
    y.backward(gy)
    return y.detach(), xr.grad, wr.grad


def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def rounding(layers=LAYERS):
    rows = []
    for name, ndim, xs, ws, pad in layers:
        tconv = F.conv1d if ndim == 1 else F.conv2d
        bconv = BF.conv1d if ndim == 1 else BF.conv2d
        x, w = _data(xs, ws)
        y0 = tconv(x, w, padding=pad)
        gy = torch.randn(y0.shape, generator=torch.Generator().manual_seed(1))
        oracle = _fwd_bwd(tconv, x.double(), w.double(), gy.double(), padding=pad)
        torch32 = _fwd_bwd(tconv, x, w, gy, padding=pad)
        blfft32 = _fwd_bwd(bconv, x, w, gy, padding=pad)
        row = {"layer": name}
        for i, what in enumerate(("output", "grad_input", "grad_weight")):
            row[f"torch_{what}"] = _rel(torch32[i], oracle[i])
            row[f"blfft_{what}"] = _rel(blfft32[i], oracle[i])
        # Rate 0.5: blfft float32 against blfft float64 (the band-limited operator's oracle).
        b64 = _fwd_bwd(bconv, x.double(), w.double(), gy.double(), padding=pad, compress_rate=0.5)
        b32 = _fwd_bwd(bconv, x, w, gy, padding=pad, compress_rate=0.5)
        for i, what in enumerate(("output", "grad_input", "grad_weight")):
            row[f"blfft_r05_{what}"] = _rel(b32[i], b64[i])
        rows.append(row)
    return rows


def _first_nonfinite(fn, exps):
    for e in exps:
        if not fn(10.0**e):
            return e
    return None


def float32_range(layers=(LAYERS[0], LAYERS[3])):
    exps = [e / 4 for e in range(4 * 28, 4 * 39)]
    rows = []
    for name, ndim, xs, ws, pad in layers:
        tconv = F.conv1d if ndim == 1 else F.conv2d
        bconv = BF.conv1d if ndim == 1 else BF.conv2d
        x, w = _data(xs, ws)
        x = x[:1]
        with torch.no_grad():
            ymax = tconv(x.double(), w.double(), padding=pad).abs().max().item()
            row = {"layer": name, "max_abs_output_per_unit_input": ymax}
            for lib, conv in (("torch", tconv), ("blfft", bconv)):
                for rate in (0.0, 0.5) if lib == "blfft" else (0.0,):
                    kw = {"padding": pad}
                    if lib == "blfft":
                        kw["compress_rate"] = rate
                    def finite(s, conv=conv, kw=kw):
                        return bool(torch.isfinite(conv(x * s, w, **kw)).all())

                    e = _first_nonfinite(finite, exps)
                    key = f"{lib}" if lib == "torch" else f"{lib}_rate{rate}"
                    row[key] = e
        rows.append(row)
    return rows


def nan_spread():
    rows = []
    for name, ndim, xs, ws, pad in (LAYERS[0], LAYERS[3]):
        tconv = F.conv1d if ndim == 1 else F.conv2d
        bconv = BF.conv1d if ndim == 1 else BF.conv2d
        x, w = _data(xs, ws)
        x = x[:2].clone()
        idx = (0, 0) + tuple(s // 2 for s in xs[2:])
        x[idx] = float("nan")
        with torch.no_grad():
            row = {"layer": name}
            for lib, conv in (("torch", tconv), ("blfft", bconv)):
                y = conv(x, w, padding=pad)
                bad = ~torch.isfinite(y)
                row[f"{lib}_image0"] = bad[0].float().mean().item()
                row[f"{lib}_image1"] = bad[1].float().mean().item()
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    t0 = time.time()
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "blfft": blfft.__version__,
        "threads": blfft.get_num_threads(),
        "rounding": rounding(),
        "float32_range": float32_range(),
        "nan_spread": nan_spread(),
    }
    res["seconds"] = round(time.time() - t0, 1)

    print("Rounding, float32 relative l2 error against a float64 oracle (rate 0: torch's conv in")
    print("float64; rate 0.5: blfft in float64), batch 4:\n")
    print("| layer | output torch / blfft | grad input torch / blfft | grad weight torch / blfft "
          "| blfft rate 0.5 out / gx / gw |")
    print("|---|---|---|---|---|")
    for r in res["rounding"]:
        cells = [
            f"{r[f'torch_{k}']:.1e} / {r[f'blfft_{k}']:.1e}"
            for k in ("output", "grad_input", "grad_weight")
        ]
        r05 = " / ".join(f"{r[f'blfft_r05_{k}']:.1e}" for k in ("output", "grad_input",
                                                                 "grad_weight"))
        print(f"| {r['layer']} | " + " | ".join(cells) + f" | {r05} |")
    print("\nfloat32 range: smallest input scale 10^e with a non-finite output (e):\n")
    for r in res["float32_range"]:
        print(f"  {r['layer']}: torch {r['torch']}, blfft rate 0 {r['blfft_rate0.0']}, "
              f"rate 0.5 {r['blfft_rate0.5']} (max |y| per unit input scale "
              f"{r['max_abs_output_per_unit_input']:.3g})")
    print("\nOne NaN in image 0, channel 0: fraction of non-finite outputs per image:\n")
    for r in res["nan_spread"]:
        print(f"  {r['layer']}: torch {r['torch_image0']:.4f} / {r['torch_image1']:.1f}, "
              f"blfft {r['blfft_image0']:.4f} / {r['blfft_image1']:.1f}")
    print(f"\n({res['seconds']} s)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
