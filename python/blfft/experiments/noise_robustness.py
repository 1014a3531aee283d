"""Robustness to Gaussian noise on the test inputs (the paper's Fig. 6).

Models are trained (on clean data) at compression rates 0, 0.5 and 0.85 and evaluated on the
test set with N(0, sigma^2) noise added to every input value, for increasing sigma (the inputs
are standardised, so sigma is relative to their standard deviation). The noise is seeded and the
same for every model. Band-limited layers discard the high frequencies where white noise puts
most of its energy, so more compression is expected to degrade more slowly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common, recipes

NAME = "noise_robustness"
RATES = (0.0, 0.5, 0.85)
SIGMAS = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
FCN_DATASET = "FaceAll"
QUICK = dict(dataset="Chinatown", sigmas=(0.0, 0.5))


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model_arguments(p, FCN_DATASET)


def run(args, out: Path) -> dict:
    scale = recipes.scale_for(args)
    sigmas = QUICK["sigmas"] if args.quick else SIGMAS
    rows = []
    for kind, d in recipes.models_and_data(args, scale, FCN_DATASET, QUICK["dataset"]):
        for rate in RATES:
            model, rec = recipes.fit_for(
                args, kind, d, scale, f"{kind} {d.name} rate {rate}", compress_rate=rate
            )
            accs = []
            for sigma in sigmas:
                ev = common.evaluate(
                    model,
                    d.x_test,
                    d.y_test,
                    noise_sigma=sigma,
                    noise_seed=common.model_seed(args.seed, "noise", sigma),
                )
                accs.append(ev["acc"])
                rows.append(common.accuracy_row(kind, d, rec, ev, rate=rate, sigma=sigma))
            common.print_accuracies(f"{kind} {d.name} rate {rate}", "sigma", sigmas, accs)
    files = common.write_outputs(
        out, NAME, rows, _markdown(rows, sigmas), lambda path: _plot(rows, path)
    )
    return {
        "experiment": NAME,
        "rows": rows,
        "sigmas": list(sigmas),
        "rates": list(RATES),
        "files": files,
    }


def _markdown(rows, sigmas) -> str:
    parts = []
    for model, ds in dict.fromkeys((r["model"], r["dataset"]) for r in rows):
        parts.append(f"{model} on {ds}: test accuracy % under Gaussian noise\n")
        body = []
        for rate in RATES:
            accs = {
                r["sigma"]: r["test_acc"]
                for r in rows
                if r["model"] == model and r["dataset"] == ds and r["rate"] == rate
            }
            body.append([f"{rate:g}"] + [f"{100 * accs[s]:.2f}" for s in sigmas])
        parts.append(common.markdown_table(body, ["rate \\ sigma"] + [f"{s:g}" for s in sigmas]))
    return "\n".join(parts)


def _plot(rows, path: Path) -> bool:
    def draw(axes, model, ds, sel):
        ax = axes[0]
        for rate in RATES:
            pts = sorted((r["sigma"], 100 * r["test_acc"]) for r in sel if r["rate"] == rate)
            ax.plot(*zip(*pts, strict=True), "o-", label=f"rate {rate:g}")
        ax.set_title(f"{model}: {ds}", fontsize=9)
        ax.set_xlabel("noise sigma")
        ax.set_ylabel("test accuracy %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    return common.plot_model_panels(rows, path, 1, 3.4, draw)
