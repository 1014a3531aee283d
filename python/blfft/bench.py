"""Side-by-side benchmark: blfft against the convolutions people already use.

``python -m blfft.bench [--quick] [--out bench/results] [--repeats N] [--threads T]``
(``--cuda-traffic``: the CUDA pipeline's emulated traffic instead, see blfft/cuda_traffic.py)

For each layer shape and compression rate it measures, in one process and on the same threads:

- blfft (``blfft.functional.conv1d/conv2d``, ``conv_transpose2d`` for the U-Net's up-sampling
  layers, ``conv3d`` for the video model's layer),
- ``torch.nn.functional.conv1d/conv2d/conv_transpose2d/conv3d`` (oneDNN on the CPU),
- blfft in energy mode (``energy=0.99``, 1D/2D convolutions), once per layer, against blfft at the
  fixed rate it selects on the benchmark input (the two run alternately),
- ``fft-conv-pytorch`` from PyPI (full-spectrum FFT convolution, rate 0 only),
- a paper-style pipeline written here in pure torch (full FFT on the paper's power-of-two grid
  ``H + 2p + max(out, K) - 1``, slice the kept corners, multiply, zero-fill, inverse),

forward, backward and forward+backward times (medians of repeated runs after warm-up), the peak
resident memory of one forward+backward, and the bytes held for backward, split into the part that
grows with the batch and the part that does not (weights, weight spectra). It also times a large
sgemm, so blfft's arithmetic rate can be read against the machine's. Results go to
``<out>/bench.json`` (everything), ``<out>/bench.md`` (tables of ratios) and ``<out>/bench.png``
(time against compression rate, one panel per layer).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

import blfft
from blfft._geometry import geometry
from blfft.experiments.common import peak_rss_during, save_figure

RATES = (0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Layer:
    name: str
    ndim: int
    batch: int
    cin: int
    cout: int
    size: int  # H = W (2D) or L (1D)
    kernel: int
    stride: int
    padding: object  # int, or "same"
    transposed: bool = False  # a ConvTranspose (size: its input; weight (cin, cout, k, k))
    depth: int = 0  # 3D layers: the depth D (size: H = W)

    def spatial(self) -> Tuple[int, ...]:
        """The input's spatial shape."""
        return ((self.depth,) if self.ndim == 3 else ()) + (self.size,) * min(self.ndim, 2)

    def explicit_padding(self) -> int:
        """Symmetric padding for the pure-torch pipelines ('same' with odd kernels only)."""
        if self.padding == "same":
            return (self.kernel - 1) // 2
        return int(self.padding)


RESNET18 = [
    Layer("r18 64ch 32x32", 2, 32, 64, 64, 32, 3, 1, 1),
    Layer("r18 128ch 16x16", 2, 32, 128, 128, 16, 3, 1, 1),
    Layer("r18 256ch 8x8", 2, 32, 256, 256, 8, 3, 1, 1),
    Layer("r18 512ch 4x4", 2, 32, 512, 512, 4, 3, 1, 1),
    Layer("r18 64->128 s2 32x32", 2, 32, 64, 128, 32, 3, 2, 1),
    Layer("r18 128->256 s2 16x16", 2, 32, 128, 256, 16, 3, 2, 1),
    Layer("r18 256->512 s2 8x8", 2, 32, 256, 512, 8, 3, 2, 1),
]
FCN = [
    Layer("fcn 1->128 k8 L500", 1, 16, 1, 128, 500, 8, 1, "same"),
    Layer("fcn 128->256 k5 L500", 1, 16, 128, 256, 500, 5, 1, "same"),
    Layer("fcn 256->128 k3 L500", 1, 16, 256, 128, 500, 3, 1, "same"),
]
# The up-sampling layers of a small U-Net (k2 s2) and a GAN generator's k4 s2 p1 layer.
UNET = [
    Layer("unet up 128->64 k2 s2 16x16", 2, 16, 128, 64, 16, 2, 2, 0, True),
    Layer("unet up 64->32 k2 s2 32x32", 2, 16, 64, 32, 32, 2, 2, 0, True),
    Layer("gan up 128->64 k4 s2 p1 16x16", 2, 16, 128, 64, 16, 4, 2, 1, True),
]
# A video model's 3x3x3 layer (C3D / R3D-style 16-frame clips of 56x56 maps). Batch 2 keeps a
# fwd+bwd within seconds on 2 cores.
VIDEO = [
    Layer("video 64ch 16x56x56 k3", 3, 2, 64, 64, 56, 3, 1, 1, depth=16),
]
QUICK = [
    Layer("quick 16ch 16x16", 2, 4, 16, 16, 16, 3, 1, 1),
    Layer("quick 8->16 s2 16x16", 2, 4, 8, 16, 16, 3, 2, 1),
    Layer("quick fcn 8->16 k5 L64", 1, 4, 8, 16, 64, 5, 1, "same"),
    Layer("quick up 16->8 k4 s2 p1 8x8", 2, 4, 16, 8, 8, 4, 2, 1, True),
]


# ------------------------------------------------------------------------------------------
# The implementations under test: each maps (x, w, layer, rate) to y, differentiably.
# ------------------------------------------------------------------------------------------


def _blfft(x, w, layer: Layer, rate: float):
    if layer.transposed:
        return blfft.functional.conv_transpose2d(
            x, w, None, layer.stride, layer.padding, compress_rate=rate
        )
    fns = (blfft.functional.conv1d, blfft.functional.conv2d, blfft.functional.conv3d)
    return fns[layer.ndim - 1](x, w, None, layer.stride, layer.padding, compress_rate=rate)


def _torch(x, w, layer: Layer, rate: float):
    if layer.transposed:
        return F.conv_transpose2d(x, w, None, layer.stride, layer.padding)
    conv = (F.conv1d, F.conv2d, F.conv3d)[layer.ndim - 1]
    return conv(x, w, None, layer.stride, layer.padding)


def _fft_conv_pytorch(x, w, layer: Layer, rate: float):
    from fft_conv_pytorch import fft_conv

    p = layer.explicit_padding()
    if layer.padding == "same" and layer.kernel % 2 == 0:
        # Even kernel: torch's 'same' pads one more on the right.
        x = F.pad(x, (p, p + 1))
        p = 0
    with warnings.catch_warnings():
        # It indexes with a list (deprecated in torch); not ours to fix.
        warnings.simplefilter("ignore", UserWarning)
        return fft_conv(x, w, None, padding=p, stride=layer.stride)


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _paper(x, w, layer: Layer, rate: float):
    """The paper's pipeline, in this project's own words: full spectra on a power-of-two grid."""
    k = layer.kernel
    if layer.padding == "same":
        pads = ((k - 1) // 2, k - 1 - (k - 1) // 2)  # torch's 'same': the extra zero on the right
    else:
        p = layer.explicit_padding()
        pads = (p, p)
    spatial = [layer.size] * layer.ndim
    padded = [s + pads[0] + pads[1] for s in spatial]
    full_out = [s - k + 1 for s in padded]
    grid = [_next_pow2(s + max(o, k) - 1) for s, o in zip(padded, full_out)]
    dims = tuple(range(-layer.ndim, 0))
    xp = F.pad(x, pads * layer.ndim)
    X = torch.fft.rfftn(xp, s=grid, dim=dims)
    W = torch.fft.rfftn(w, s=grid, dim=dims)
    keep = [max(1, int(math.floor((L // 2 + 1) * (1 - rate) ** (1 / layer.ndim) + 1e-9)))
            for L in grid]
    if layer.ndim == 1:
        Xk, Wk = X[..., : keep[0]], W[..., : keep[0]]
        Yk = torch.einsum("ncl,fcl->nfl", Xk, Wk.conj())
        Y = torch.zeros(x.shape[0], w.shape[0], grid[0] // 2 + 1, dtype=Yk.dtype)
        Y[..., : keep[0]] = Yk
    else:
        ih, iw = keep
        rows = torch.cat([torch.arange(ih), torch.arange(grid[0] - ih + 1, grid[0])])
        rows = torch.unique(rows % grid[0])
        Xk, Wk = X[:, :, rows][..., :iw], W[:, :, rows][..., :iw]
        Yk = torch.einsum("nchw,fchw->nfhw", Xk, Wk.conj())
        Y = torch.zeros(x.shape[0], w.shape[0], grid[0], grid[1] // 2 + 1, dtype=Yk.dtype)
        Y[:, :, rows, :iw] = Yk
    y = torch.fft.irfftn(Y, s=grid, dim=dims)
    crop = tuple(slice(0, o, layer.stride) for o in full_out)
    return y[(Ellipsis, *crop)]


def _blfft_with(setter: Callable, getter: Callable, value) -> Callable:
    """_blfft with one of blfft's saving settings changed for the call (and restored)."""

    def impl(x, w, layer: Layer, rate: float):
        before = getter()
        setter(value)
        try:
            return _blfft(x, w, layer, rate)
        finally:
            setter(before)

    return impl


# The speed side of the keep-or-recompute trade for weight spectra (the default, "auto",
# recomputes them whenever keeping them would hold more than torch's convolution does), and the
# memory side of storing the kept spectra in bfloat16.
def _blfft_energy(x, w, layer: Layer, rate: float):
    """blfft in energy mode (energy=ENERGY; `rate` unused): the selection runs at every call."""
    fns = (blfft.functional.conv1d, blfft.functional.conv2d)
    return fns[layer.ndim - 1](x, w, None, layer.stride, layer.padding, energy=ENERGY)


ENERGY = 0.99
_blfft_keep = _blfft_with(
    blfft.set_weight_spectrum_saving, blfft.get_weight_spectrum_saving, "keep"
)
_blfft_bf16 = _blfft_with(
    blfft.set_saved_spectrum_dtype, blfft.get_saved_spectrum_dtype, torch.bfloat16
)


IMPLS: Dict[str, Callable] = {
    "blfft": _blfft,
    "blfft_keep": _blfft_keep,
    "blfft_bf16": _blfft_bf16,
    "blfft_energy": _blfft_energy,
    "torch": _torch,
    "fft_conv_pytorch": _fft_conv_pytorch,
    "paper": _paper,
}
# Baselines without a compression knob are measured once (rate 0) and compared at every rate.
RATE_FREE = {"torch", "fft_conv_pytorch"}
# Energy mode chooses its rate per call: measured once per layer, next to blfft at the rate it
# chose (_energy_row), in one interleaved loop.
ENERGY_IMPLS = {"blfft_energy"}
# Baselines without transposed convolutions.
NO_TRANSPOSED = {"fft_conv_pytorch", "paper", "blfft_energy"}
# Baselines without 3D convolutions (the paper's pipeline here is 1D/2D).
NO_3D = {"paper", "blfft_energy"}


# ------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------


def _inputs(layer: Layer, batch: Optional[int] = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch or layer.batch, layer.cin) + layer.spatial()
    x = torch.randn(shape, generator=g, requires_grad=True)
    channels = (layer.cin, layer.cout) if layer.transposed else (layer.cout, layer.cin)
    w = torch.randn(channels + (layer.kernel,) * layer.ndim, generator=g)
    w = (w / math.sqrt(layer.cin * layer.kernel**layer.ndim)).requires_grad_(True)
    return x, w


def _time(impl: Callable, layer: Layer, rate: float, repeats: int, warmup: int) -> dict:
    x, w = _inputs(layer)
    fwd, bwd, both = [], [], []
    # Baselines that take seconds per call (fft-conv-pytorch, the paper's grid) get fewer runs:
    # their medians need no more to be far from blfft's, and the benchmark stays minutes long.
    t = time.perf_counter()
    first = impl(x, w, layer, rate)  # also a warm-up
    first.backward(torch.ones_like(first))
    if time.perf_counter() - t > 1.0:
        repeats, warmup = min(repeats, 3), 0
    for i in range(warmup + repeats):
        x.grad = w.grad = None
        t0 = time.perf_counter()
        y = impl(x, w, layer, rate)
        t1 = time.perf_counter()
        y.backward(torch.ones_like(y))
        t2 = time.perf_counter()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            both.append(t2 - t0)
    ms = lambda v: 1e3 * statistics.median(v)  # noqa: E731
    return {"fwd_ms": ms(fwd), "bwd_ms": ms(bwd), "fwd_bwd_ms": ms(both)}


def _energy_row(layer: Layer, repeats: int, warmup: int) -> dict:
    """Energy mode against the fixed rate it selects on the benchmark input: fwd+bwd medians of
    the two, run alternately (the issue's target: energy at most 1.15x that fixed rate)."""
    x, w = _inputs(layer)
    dims = layer.ndim
    pad = layer.explicit_padding()
    band, sel = blfft._ops.select_band(
        x.detach(), w.shape, [layer.stride] * dims, [pad] * dims, [1] * dims, 1, ENERGY
    )
    rate = float(sel.rate)
    times: Dict[str, List[float]] = {"energy": [], "fixed": []}
    runs = {"energy": lambda: _blfft_energy(x, w, layer, 0.0), "fixed": lambda: _blfft(x, w, layer, rate)}
    for i in range(warmup + repeats):
        for name, fn in runs.items():
            x.grad = w.grad = None
            t0 = time.perf_counter()
            y = fn()
            y.backward(torch.ones_like(y))
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    e, f = (1e3 * statistics.median(times[k]) for k in ("energy", "fixed"))
    return {"selected_rate": rate, "selected_band": band, "energy_fwd_bwd_ms": e,
            "fixed_fwd_bwd_ms": f, "energy_over_fixed": e / f}


def _held_bytes(impl: Callable, layer: Layer, rate: float) -> Tuple[int, int]:
    """Bytes of the distinct storages autograd keeps for backward after one forward, split into
    (grows with the batch, does not): the weight and weight spectra are the second kind, told
    apart by identity and by the size of the layer's weight spectrum."""
    x, w = _inputs(layer)
    # An activation, as inside a network (blfft also keeps a leaf input by reference, for
    # double backward: that costs nothing, the leaf's owner holds it).
    x = x.clone()
    w_spectrum = _geometry(layer, rate).w_spectrum_size
    batch: Dict[int, int] = {}
    fixed: Dict[int, int] = {}

    def pack(t):
        if t.device.type == "cpu" and t.numel() > 0:
            s = t.untyped_storage()
            is_fixed = s.data_ptr() == w.untyped_storage().data_ptr() or (
                t.dim() == 1 and t.numel() == w_spectrum
            )
            (fixed if is_fixed else batch)[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = impl(x, w, layer, rate)
    del y
    return sum(batch.values()), sum(fixed.values())


def _memory(impl: Callable, layer: Layer, rate: float) -> dict:
    held_batch, held_fixed = _held_bytes(impl, layer, rate)
    input_bytes = layer.batch * layer.cin * math.prod(layer.spatial()) * 4
    return {
        "held_batch_bytes": held_batch,
        "held_fixed_bytes": held_fixed,
        "held_batch_over_input": held_batch / input_bytes,
        "peak_rss_bytes": _peak_rss(impl, layer, rate),
    }


def _peak_rss(impl: Callable, layer: Layer, rate: float) -> Optional[int]:
    """Peak resident memory above the starting point during one forward+backward."""
    x, w = _inputs(layer)

    def step():
        y = impl(x, w, layer, rate)
        y.backward(torch.ones_like(y))

    return peak_rss_during(step)


def _arithmetic(layer: Layer, rate: float) -> float:
    """Floating-point operations of blfft's channel mixing over fwd+bwd: three real GEMMs per
    kept frequency and group (Gauss's trick), in each of the three passes. The transforms are
    left out: their arithmetic depends on the engine each one runs on (FFT or pruned-DFT GEMMs,
    chosen per transform by the core), so GFLOP/s here is a lower bound of the achieved rate,
    comparable across layers and rates. Sizes come from the core's geometry."""
    g = _geometry(layer, rate)
    n, c, f = layer.batch, layer.cin, layer.cout
    return float(3 * g.kept * 3 * 2 * n * f * c)


def _geometry(layer: Layer, rate: float):
    """The core's geometry of a layer (at its benchmark batch); of a transposed layer, that of
    the convolution it is the adjoint of (input: the transposed layer's output)."""
    pad = layer.explicit_padding() if layer.padding != "same" else (layer.kernel - 1) // 2
    sp = list(layer.spatial())
    cin, cout = layer.cin, layer.cout
    if layer.transposed:
        sp = [(n - 1) * layer.stride - 2 * pad + layer.kernel for n in sp]
        cin, cout = cout, cin
    return geometry(
        (layer.batch, cin, *sp), (cout, cin, *[layer.kernel] * layer.ndim),
        [layer.stride] * layer.ndim, [pad] * layer.ndim, [1] * layer.ndim, 1, rate)[2]


def _sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times) / 1e9


def _available(name: str) -> bool:
    if name == "fft_conv_pytorch":
        try:
            import fft_conv_pytorch  # noqa: F401
        except ImportError:
            return False
    return True


# ------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------


def _markdown(results: List[dict], meta: dict) -> str:
    out = [
        f"# blfft benchmark ({meta['date']})",
        "",
        f"{meta['machine']}; torch {meta['torch']}, blfft {meta['blfft']}, "
        f"{meta['threads']} threads; medians of {meta['repeats']} runs after warm-up. "
        f"Large sgemm (torch, 2048^3): {meta['sgemm_gflops']:.1f} GFLOP/s.",
        "",
        "## Forward+backward time, ratio blfft / baseline (lower is better)",
        "",
        "| layer | rate | blfft ms | torch ms | blfft/torch | blfft/fft-conv-pytorch | "
        "blfft/paper | mixing GFLOP/s | held (batch) / input | same, bf16 spectra |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["layer"], r["impl"], r["rate"]): r for r in results}
    for r in results:
        if r["impl"] != "blfft":
            continue
        layer, rate = r["layer"], r["rate"]
        t = r["fwd_bwd_ms"]

        def ratio(impl):
            base = by.get((layer, impl, 0.0 if impl in RATE_FREE else rate))
            return f"{t / base['fwd_bwd_ms']:.2f}" if base else "n/a"

        def held_bf16(layer, rate):
            r16 = by.get((layer, "blfft_bf16", rate))
            return f"{r16['held_batch_over_input']:.2f}" if r16 else "n/a"

        torch_ms = by.get((layer, "torch", 0.0), {}).get("fwd_bwd_ms", float("nan"))
        out.append(
            f"| {layer} | {rate:.2f} | {t:.1f} | {torch_ms:.1f} | {ratio('torch')} | "
            f"{ratio('fft_conv_pytorch')} | {ratio('paper')} | {r['gflops']:.1f} | "
            f"{r['held_batch_over_input']:.2f} | {held_bf16(layer, rate)} |"
        )
    energy_rows = [r for r in results if r["impl"] in ENERGY_IMPLS]
    if energy_rows:
        out += [
            "",
            f"## Energy mode (energy={ENERGY}) against the fixed rate it selects (fwd+bwd)",
            "",
            "| layer | selected rate | energy ms | fixed-rate ms | energy / fixed |",
            "|---|---|---|---|---|",
        ]
        for r in energy_rows:
            out.append(
                f"| {r['layer']} | {r['selected_rate']:.2f} | {r['energy_fwd_bwd_ms']:.1f} | "
                f"{r['fixed_fwd_bwd_ms']:.1f} | {r['energy_over_fixed']:.2f} |"
            )
    out += [
        "",
        "## Forward and backward separately (ms)",
        "",
        "| layer | impl | rate | fwd | bwd | held batch MB | held fixed MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["impl"] in ENERGY_IMPLS:
            continue
        peak = r.get("peak_rss_bytes")
        out.append(
            f"| {r['layer']} | {r['impl']} | {r['rate']:.2f} | {r['fwd_ms']:.1f} | "
            f"{r['bwd_ms']:.1f} | {r['held_batch_bytes'] / 2**20:.2f} | "
            f"{r['held_fixed_bytes'] / 2**20:.2f} | "
            f"{'n/a' if peak is None else f'{peak / 2**20:.1f}'} |"
        )
    return "\n".join(out) + "\n"


def _plot(results: List[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    layers = list(dict.fromkeys(r["layer"] for r in results))
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        for impl in IMPLS:
            if impl in ENERGY_IMPLS:
                continue  # one rate per call, chosen by the data: the markdown's own table
            pts = sorted((r["rate"], r["fwd_bwd_ms"]) for r in results
                         if r["layer"] == layer and r["impl"] == impl)
            if not pts:
                continue
            if impl in RATE_FREE:
                # Dashed grey/black lines: kept apart from the colour cycle of the blfft variants.
                ax.axhline(pts[0][1], ls="--", lw=1, label=impl,
                           color="k" if impl == "torch" else "0.5")
            else:
                ax.plot(*zip(*pts), marker="o", label=impl)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("compression rate")
        ax.set_ylabel("fwd+bwd ms")
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------


def run(layers: List[Layer], rates, repeats: int, warmup: int, impls: List[str],
        on_layer: Optional[Callable[[List[dict]], None]] = None) -> List[dict]:
    """Measures every (layer, impl, rate); `on_layer(results)` after each layer, so a long run
    that is stopped keeps what it measured."""
    results = []
    for layer in layers:
        for impl in impls:
            if layer.transposed and impl in NO_TRANSPOSED:
                continue
            if layer.ndim == 3 and impl in NO_3D:
                continue
            if impl in ENERGY_IMPLS:
                if layer.padding == "same" and layer.kernel % 2 == 0:
                    continue  # (an extra pad first: the selection would see another input)
                r = {"layer": layer.name, "impl": impl, "rate": 0.0, "energy": ENERGY,
                     **asdict(layer), **_energy_row(layer, repeats, warmup)}
                r["fwd_bwd_ms"] = r["energy_fwd_bwd_ms"]
                results.append(r)
                print(f"{layer.name:26s} {impl:17s} E {ENERGY}: fwd+bwd "
                      f"{r['energy_fwd_bwd_ms']:8.2f} ms, {r['energy_over_fixed']:.2f}x the fixed "
                      f"rate it selects ({r['selected_rate']:.2f})", flush=True)
                continue
            for rate in ([0.0] if impl in RATE_FREE else rates):
                fn = IMPLS[impl]
                r = {"layer": layer.name, "impl": impl, "rate": rate, **asdict(layer)}
                r.update(_time(fn, layer, rate, repeats, warmup))
                r.update(_memory(fn, layer, rate))
                if impl == "blfft":
                    r["gflops"] = _arithmetic(layer, rate) / (r["fwd_bwd_ms"] * 1e-3) / 1e9
                results.append(r)
                print(f"{layer.name:26s} {impl:17s} rate {rate:.2f}: "
                      f"fwd {r['fwd_ms']:8.2f} ms  bwd {r['bwd_ms']:8.2f} ms  "
                      f"fwd+bwd {r['fwd_bwd_ms']:8.2f} ms", flush=True)
        if on_layer:
            on_layer(results)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m blfft.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few repeats (seconds)")
    ap.add_argument("--out", default="bench/results", help="folder for bench.{json,md,png}")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and blfft")
    ap.add_argument(
        "--layers", default="all", help="all | resnet | fcn | unet | video | substring of a name"
    )
    ap.add_argument("--rates", default=None, help="comma-separated (default 0,0.25,0.5,0.75)")
    ap.add_argument(
        "--impls",
        default="blfft,blfft_keep,blfft_bf16,blfft_energy,torch,fft_conv_pytorch,paper",
    )
    ap.add_argument("--cuda-traffic", action="store_true",
                    help="CUDA launches and global traffic per pass, emulated (no GPU needed): "
                         "writes <out>/cuda_traffic.json (blfft/cuda_traffic.py)")
    args = ap.parse_args(argv)
    if args.cuda_traffic:
        from blfft import cuda_traffic

        return cuda_traffic.main(quick=args.quick, out=args.out)

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    blfft.set_num_threads(threads)
    if args.quick:
        layers, repeats = QUICK, args.repeats or 2
    else:
        layers, repeats = RESNET18 + FCN + UNET + VIDEO, args.repeats or 7
        if args.layers == "resnet":
            layers = RESNET18
        elif args.layers == "fcn":
            layers = FCN
        elif args.layers == "unet":
            layers = UNET
        elif args.layers == "video":
            layers = VIDEO
        elif args.layers != "all":
            layers = [la for la in layers if args.layers in la.name]
    if args.rates is None:
        rates = [0.0, 0.5] if args.quick else list(RATES)
    else:
        rates = [float(r) for r in args.rates.split(",")]
    impls = [i for i in args.impls.split(",") if _available(i)]
    missing = set(args.impls.split(",")) - set(impls)
    if missing:
        print(f"note: not installed, skipped: {', '.join(sorted(missing))}")

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "blfft": blfft.__version__,
        "threads": threads,
        "repeats": repeats,
        "warmup": args.warmup,
        "quick": args.quick,
        "sgemm_gflops": _sgemm_gflops(1024 if args.quick else 2048),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def write(results: List[dict]) -> None:
        (out / "bench.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        (out / "bench.md").write_text(_markdown(results, meta))

    results = run(layers, rates, repeats, args.warmup, impls, on_layer=write)
    plotted = _plot(results, out / "bench.png")
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}"
          + (f", {out / 'bench.png'}" if plotted else " (no matplotlib: no plot)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
