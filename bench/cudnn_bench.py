"""cuDNN baseline for tools/gpu_check.sh: torch.nn.functional.conv2d forward + backward (input,
weight and bias gradients) on the layer shapes of bench/gpu_bench.cpp, timed the same way (CUDA
events around each forward and each backward, median over the timed iterations) with
torch.backends.cudnn.benchmark on, in strict float32 and with TF32 allowed (PyTorch's default
for convolutions). Peak memory: torch.cuda.max_memory_allocated over one forward + backward.
Uses torch only. One JSON object per line.

    python3 bench/cudnn_bench.py [--out FILE] [--iters N] [--warmup N] [--quick]
"""

import argparse
import json
import statistics
import sys

import torch


def run(channels, size, batch, tf32, iters, warmup):
    # torch's default for convolutions is cudnn.allow_tf32 = True (the "cudnn_tf32" rows); the
    # "cudnn" rows are strict float32. Matmuls are not involved.
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(1234)
    x = torch.rand(batch, channels, size, size, device=dev, generator=g).requires_grad_()
    w = torch.rand(channels, channels, 3, 3, device=dev, generator=g).requires_grad_()
    b = torch.rand(channels, device=dev, generator=g).requires_grad_()
    dy = torch.rand(batch, channels, size, size, device=dev, generator=g)
    e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))

    def step(timed):
        if timed:
            e0.record()
        y = torch.nn.functional.conv2d(x, w, b, padding=1)
        if timed:
            e1.record()
        x.grad = w.grad = b.grad = None
        y.backward(dy)
        if timed:
            e2.record()
            e2.synchronize()
            return e0.elapsed_time(e1), e1.elapsed_time(e2)
        return None

    for _ in range(warmup):
        step(False)
    torch.cuda.synchronize()
    fwd, bwd = [], []
    for _ in range(iters):
        f, bw = step(True)
        fwd.append(f)
        bwd.append(bw)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(False)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    tot = [a + c for a, c in zip(fwd, bwd)]
    return {
        "impl": "cudnn_tf32" if tf32 else "cudnn",
        "device": torch.cuda.get_device_name(),
        "layer": f"{channels}ch@{size}x{size}",
        "channels": channels,
        "size": size,
        "batch": batch,
        "fwd_ms": statistics.median(fwd),
        "bwd_ms": statistics.median(bwd),
        "total_ms": statistics.median(tot),
        "min_total_ms": min(tot),
        "iters": iters,
        "peak_bytes": peak,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("cudnn_bench: no CUDA device", file=sys.stderr)
        return 3
    torch.backends.cudnn.benchmark = True
    layers = [(64, 32), (128, 16), (256, 8), (512, 4)]
    batches = [32, 128]
    if a.quick:  # the GPU check: every ResNet-18 layer shape, batch 32
        batches = [32]
        a.iters = min(a.iters, 15)
    out = open(a.out, "w") if a.out else sys.stdout
    for channels, size in layers:
        for batch in batches:
            for tf32 in (False, True):
                rec = run(channels, size, batch, tf32, a.iters, a.warmup)
                out.write(json.dumps(rec) + "\n")
                out.flush()
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
