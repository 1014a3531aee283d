"""Training rate x inference rate (the paper's Fig. 5).

One model is trained per training rate; each is then evaluated at every inference rate (the
layers' ``inference_compress_rate``, set with ``blfft.set_compression(mode='inference')``).
The result is a matrix of test accuracies per model/data pair: rows the training rate, columns
the inference rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import blfft

from . import common, recipes

NAME = "train_vs_inference"
TRAIN_RATES = (0.0, 0.25, 0.5, 0.75)
INFER_RATES = (0.0, 0.25, 0.5, 0.75, 0.9)
FCN_DATASET = "FaceAll"
QUICK = dict(dataset="Chinatown", train_rates=(0.0, 0.5), infer_rates=(0.0, 0.5, 0.75))


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p, FCN_DATASET)


def run(args, out: Path) -> dict:
    scale = recipes.scale_for(args)
    train_rates = QUICK["train_rates"] if args.quick else TRAIN_RATES
    infer_rates = QUICK["infer_rates"] if args.quick else INFER_RATES
    rows, matrices = [], []
    for kind, d in recipes.models_and_data(args, scale, FCN_DATASET, QUICK["dataset"]):
        matrix = []
        for tr in train_rates:
            model, rec = recipes.fit_for(
                args, kind, d, scale, f"{kind} {d.name} train rate {tr}", compress_rate=tr
            )
            line = []
            for ir in infer_rates:
                blfft.set_compression(model, ir, mode="inference")
                ev = common.evaluate(model, d.x_test, d.y_test)
                line.append(ev["acc"])
                setting = dict(
                    train_rate=tr, inference_rate=ir, achieved_inference_rate=ev["achieved_rate"]
                )
                rows.append(common.accuracy_row(kind, d, rec, ev, **setting))
            common.print_accuracies(f"{kind} {d.name} train rate {tr}", "infer", infer_rates, line)
            matrix.append(line)
        matrices.append(
            {
                "model": kind,
                "dataset": d.name,
                "train_rates": list(train_rates),
                "inference_rates": list(infer_rates),
                "test_acc": matrix,
            }
        )
    files = common.write_outputs(
        out, NAME, rows, _markdown(matrices), lambda path: _plot(matrices, path)
    )
    return {"experiment": NAME, "rows": rows, "matrices": matrices, "files": files}


def _markdown(matrices) -> str:
    parts = []
    for m in matrices:
        parts.append(
            f"{m['model']} on {m['dataset']}: test accuracy % (rows: training rate, "
            f"columns: inference rate)\n"
        )
        body = [
            [f"{tr:g}"] + [f"{100 * a:.2f}" for a in line]
            for tr, line in zip(m["train_rates"], m["test_acc"])
        ]
        parts.append(
            common.markdown_table(
                body, ["train \\ infer"] + [f"{r:g}" for r in m["inference_rates"]]
            )
        )
    return "\n".join(parts)


def _plot(matrices, path: Path) -> bool:
    plt = common.pyplot()
    if plt is None or not matrices:
        return False
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 3.8), squeeze=False)
    for ax, m in zip(axes.flat, matrices):
        acc = [[100 * a for a in line] for line in m["test_acc"]]
        im = ax.imshow(acc, cmap="viridis", aspect="auto", origin="upper")
        ax.set_xticks(range(len(m["inference_rates"])), [f"{r:g}" for r in m["inference_rates"]])
        ax.set_yticks(range(len(m["train_rates"])), [f"{r:g}" for r in m["train_rates"]])
        ax.set_xlabel("inference compression rate")
        ax.set_ylabel("training compression rate")
        ax.set_title(f"{m['model']}: {m['dataset']} (test acc %)", fontsize=9)
        for i, line in enumerate(acc):
            for j, a in enumerate(line):
                ax.text(j, i, f"{a:.1f}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return common.save_figure(fig, path)
