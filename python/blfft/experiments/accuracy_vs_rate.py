"""Test accuracy against compression, fixed-rate and energy-based (the paper's Fig. 3).

For each model/data pair, one model is trained per setting: fixed compression rates (the same
rate in every layer, in training and inference) and energy levels (every call keeps the largest
compression whose kept set holds that fraction of the input spectrum's energy; the x-axis is then
the rate the layers chose, averaged over layers and test batches). Rows: model, dataset, mode,
setting, achieved rate, test accuracy, seconds per epoch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common, recipes

NAME = "accuracy_vs_rate"
RATES = (0.0, 0.25, 0.5, 0.75, 0.9)
ENERGIES = (0.999, 0.99, 0.95, 0.9)
FCN_DATASETS = ("GunPoint", "ECG200", "MoteStrain", "Fungi")
RESNET_RATES = (0.0, 0.25, 0.5, 0.75)
RESNET_ENERGIES = (0.99, 0.95)

QUICK = dict(
    fcn_datasets=("Chinatown",),
    rates=(0.0, 0.5),
    energies=(0.95,),
    resnet_rates=(0.0, 0.5),
    resnet_energies=(0.95,),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="fcn,resnet", help="fcn, resnet, densenet (comma-separated)")
    p.add_argument("--datasets", default=None, help="UCR data sets for the FCN (comma-separated)")


def run(args, out: Path) -> dict:
    scale = recipes.scale_for(args)
    kinds = [k for k in args.models.split(",") if k]
    rows = []
    for kind in kinds:
        if kind == "fcn":
            names = (
                args.datasets.split(",")
                if args.datasets
                else (QUICK["fcn_datasets"] if args.quick else FCN_DATASETS)
            )
            rates = QUICK["rates"] if args.quick else RATES
            energies = QUICK["energies"] if args.quick else ENERGIES
        elif kind in recipes.KINDS:
            names = ["FashionMNIST"]
            rates = QUICK["resnet_rates"] if args.quick else RESNET_RATES
            energies = QUICK["resnet_energies"] if args.quick else RESNET_ENERGIES
        else:
            raise SystemExit(f"unknown model {kind!r} ({', '.join(recipes.KINDS)})")
        for name in names:
            d = recipes.data_for(kind, name, scale, args.seed)
            settings = [("rate", r) for r in rates] + [("energy", e) for e in energies]
            for mode, value in settings:
                knobs = {"compress_rate": value} if mode == "rate" else {"energy": value}
                seed = common.model_seed(args.seed, kind, name)  # same init for every setting
                desc = f"{kind} {d.name} {mode}={value}"
                model, rec = recipes.fit(
                    kind, d, scale, seed, desc, progress=not args.no_progress, **knobs
                )
                ev = common.evaluate(model, d.x_test, d.y_test)
                rows.append(
                    {
                        "model": kind,
                        "dataset": d.name,
                        "mode": mode,
                        "setting": value,
                        "achieved_rate": ev["achieved_rate"],
                        "test_acc": ev["acc"],
                        "train_acc": rec["history"][-1]["train_acc"],
                        "epochs": rec["config"].epochs,
                        "epoch_seconds": rec["epoch_seconds"],
                        "train_seconds": rec["train_seconds"],
                    }
                )
                print(
                    f"{desc}: test acc {ev['acc']:.4f} at achieved rate "
                    f"{ev['achieved_rate']:.3f} ({rec['epoch_seconds']:.2f} s/epoch)",
                    flush=True,
                )
    files = common.write_outputs(out, NAME, rows, _markdown(rows), lambda path: _plot(rows, path))
    return {"experiment": NAME, "rows": rows, "files": files}


def _markdown(rows) -> str:
    body = [
        [
            r["model"],
            r["dataset"],
            r["mode"],
            f"{r['setting']:g}",
            f"{r['achieved_rate']:.3f}",
            f"{100 * r['test_acc']:.2f}",
            f"{r['epoch_seconds']:.2f}",
        ]
        for r in rows
    ]
    return common.markdown_table(
        body, ["model", "dataset", "mode", "setting", "achieved rate", "test acc %", "s/epoch"]
    )


def _plot(rows, path: Path) -> bool:
    plt = common.pyplot()
    if plt is None:
        return False
    panels = list(dict.fromkeys((r["model"], r["dataset"]) for r in rows))
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False)
    for ax, (model, ds) in zip(axes.flat, panels):
        for mode, style in (("rate", "o-"), ("energy", "s--")):
            pts = sorted(
                (r["achieved_rate"], 100 * r["test_acc"])
                for r in rows
                if r["model"] == model and r["dataset"] == ds and r["mode"] == mode
            )
            if pts:
                ax.plot(*zip(*pts), style, label="fixed rate" if mode == "rate" else "energy")
        ax.set_title(f"{model}: {ds}", fontsize=9)
        ax.set_xlabel("compression rate (achieved, mean over layers)")
        ax.set_ylabel("test accuracy %")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    return common.save_figure(fig, path)
