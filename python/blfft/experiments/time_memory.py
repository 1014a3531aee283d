"""Time per epoch and memory against compression (the paper's Fig. 7), next to the same model
built with torch's own convolutions.

For each model and setting (torch's convolutions; blfft at each rate) on a fixed training subset:

- ``epoch_seconds``: one training epoch (forward, backward, Adam step for every batch) after a
  warm-up of two batches (plans, caches, allocator), median over ``--repeats`` epochs; the
  settings' epochs are interleaved (torch, each rate, torch, ...), so that the ratios to torch
  hold on a loaded machine;
- ``held_bytes`` / ``held_conv_bytes``: bytes autograd keeps for backward after one training
  forward of a batch, counted over distinct storages with ``saved_tensors_hooks`` (all of them,
  and those saved while a convolution ran: blfft keeps the compressed spectra there);
- ``peak_rss_bytes``: peak resident memory above the start during one epoch (Linux
  ``/proc/self`` high-water mark; includes the allocator's behaviour, so it is noisier).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import common, recipes

NAME = "time_memory"
RATES = (0.0, 0.25, 0.5, 0.75, 0.9)
FCN_DATASET = "FordA"  # 500-long series: where the FFT's cost is amortised best
SUBSET = {"fcn": 512, "resnet": 1024, "densenet": 512}
QUICK = dict(
    dataset="Chinatown", rates=(0.0, 0.5), subset={"fcn": 16, "resnet": 32, "densenet": 16}
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p, FCN_DATASET)
    p.add_argument("--repeats", type=int, default=None, help="timed epochs (median; 3, quick 1)")


def _epoch(model, opt, x, y, batch):
    model.train()
    for i in range(0, len(y), batch):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[i : i + batch]), y[i : i + batch])
        loss.backward()
        opt.step()


def run(args, out: Path) -> dict:
    scale = recipes.scale_for(args)
    rates = QUICK["rates"] if args.quick else RATES
    subset = QUICK["subset"] if args.quick else SUBSET
    repeats = args.repeats or (1 if args.quick else 3)
    rows = []
    for kind, d in recipes.models_and_data(args, scale, FCN_DATASET, QUICK["dataset"]):
        n = min(subset[kind], len(d.y_train))
        x, y = d.x_train[:n], d.y_train[:n]
        cfg = recipes.train_config(kind, d, scale, args.seed)
        batch = cfg.batch_size
        settings = [("torch", 0.0)] + [("blfft", r) for r in rates]
        # Every setting's model first (warm-up, held bytes), then the timed epochs interleaved:
        # repeat r times torch's epoch, then each rate's, so that a load that comes and goes on
        # the machine falls on all settings alike and the ratios to torch stay fair.
        runs = []
        for impl, rate in settings:
            seed = common.model_seed(args.seed, kind, d.name)
            knobs = {"torch_conv": True} if impl == "torch" else {"compress_rate": rate}
            model = recipes.build(kind, d, scale, seed, **knobs)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            _epoch(model, opt, x[: 2 * batch], y[: 2 * batch], batch)  # warm-up
            held = common.held_split(model, x[:batch])
            runs.append(
                {
                    "impl": impl,
                    "rate": rate,
                    "model": model,
                    "opt": opt,
                    "held": held,
                    "times": [],
                    "peak": None,
                }
            )
        for r in range(repeats):
            for run_ in runs:
                model, opt = run_["model"], run_["opt"]
                t0 = time.perf_counter()
                if r == 0:
                    run_["peak"] = common.peak_rss_during(
                        lambda m=model, o=opt, b=batch: _epoch(m, o, x, y, b)  # noqa: B023
                    )
                else:
                    _epoch(model, opt, x, y, batch)
                run_["times"].append(time.perf_counter() - t0)
        for run_ in runs:
            impl, rate, held, times, peak = (
                run_["impl"],
                run_["rate"],
                run_["held"],
                run_["times"],
                run_["peak"],
            )
            row = {
                "model": kind,
                "dataset": d.name,
                "impl": impl,
                "rate": rate,
                "samples": n,
                "batch": batch,
                "input_shape": "x".join(str(s) for s in d.input_shape),
                "epoch_seconds": statistics.median(times),
                "epoch_seconds_all": times,
                "ms_per_sample": 1e3 * statistics.median(times) / n,
                "held_bytes": held["held_bytes"],
                "held_conv_bytes": held["held_conv_bytes"],
                "held_conv_batch_bytes": held["held_conv_batch_bytes"],
                "held_conv_fixed_bytes": held["held_conv_fixed_bytes"],
                "peak_rss_bytes": peak,
            }
            rows.append(row)
            print(
                f"{kind} {d.name} {impl} rate {rate:g}: {row['epoch_seconds']:.2f} s/epoch "
                f"({n} samples), held {common.fmt_bytes(row['held_bytes'])} "
                f"(conv {common.fmt_bytes(row['held_conv_bytes'])}), peak RSS "
                f"{common.fmt_bytes(peak)}",
                flush=True,
            )
        del runs
    files = common.write_outputs(out, NAME, rows, _markdown(rows), lambda path: _plot(rows, path))
    return {"experiment": NAME, "rows": rows, "repeats": repeats, "files": files}


def _markdown(rows) -> str:
    out = []
    for model, ds in dict.fromkeys((r["model"], r["dataset"]) for r in rows):
        sel = [r for r in rows if r["model"] == model and r["dataset"] == ds]
        base = next(r for r in sel if r["impl"] == "torch")
        out.append(
            f"{model} on {ds} ({sel[0]['samples']} samples of {sel[0]['input_shape']}, batch "
            f"{sel[0]['batch']})\n"
        )
        body = [
            [
                r["impl"],
                "-" if r["impl"] == "torch" else f"{r['rate']:g}",
                f"{r['epoch_seconds']:.2f}",
                f"{r['epoch_seconds'] / base['epoch_seconds']:.2f}",
                common.fmt_bytes(r["held_bytes"]),
                common.fmt_bytes(r["held_conv_bytes"]),
                common.fmt_bytes(r["held_conv_batch_bytes"]),
                common.fmt_bytes(r["held_conv_fixed_bytes"]),
                common.fmt_bytes(r["peak_rss_bytes"]),
            ]
            for r in sel
        ]
        out.append(
            common.markdown_table(
                body,
                [
                    "convs",
                    "rate",
                    "s/epoch",
                    "x torch",
                    "held for backward",
                    "held by convs",
                    "convs: grows with batch",
                    "convs: fixed (weights, spectra)",
                    "peak RSS",
                ],
            )
        )
    return "\n".join(out)


def _plot(rows, path: Path) -> bool:
    return common.plot_model_panels(rows, path, 2, 6.4, _draw)


def _draw(axes, model, ds, sel) -> None:
    base = next(r for r in sel if r["impl"] == "torch")
    bl = sorted((r for r in sel if r["impl"] == "blfft"), key=lambda r: r["rate"])
    rates = [r["rate"] for r in bl]
    ax = axes[0]
    ax.plot(rates, [r["epoch_seconds"] for r in bl], "o-", label="blfft")
    ax.axhline(base["epoch_seconds"], ls="--", color="C1", label="torch conv")
    ax.set_title(f"{model}: {ds}, {base['samples']} samples", fontsize=9)
    ax.set_ylabel("seconds per epoch")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    mib = 2.0**20
    ax.plot(rates, [r["held_bytes"] / mib for r in bl], "o-", label="blfft: held, all")
    ax.plot(rates, [r["held_conv_bytes"] / mib for r in bl], "s-", label="blfft: held by convs")
    ax.plot(
        rates,
        [r["held_conv_batch_bytes"] / mib for r in bl],
        "^-",
        label="blfft: convs, part growing with batch",
    )
    ax.axhline(base["held_bytes"] / mib, ls="--", color="C2", label="torch: held, all")
    ax.axhline(base["held_conv_bytes"] / mib, ls=":", color="C3", label="torch: held by convs")
    ax.set_xlabel("compression rate")
    ax.set_ylabel("MiB held for backward (1 batch)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
