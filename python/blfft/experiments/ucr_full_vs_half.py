"""Full spectrum against 50% compression on many UCR data sets (the paper's Fig. 8).

For each data set the FCN is trained twice from the same initialisation and shuffling: at rate
0 and at rate 0.5 (every layer, training and inference). Outputs: a table per data set, the mean
difference in test accuracy, a two-sided Wilcoxon signed-rank test on the paired accuracies
(exact, own implementation: see ``common.wilcoxon_signed_rank``), wins/ties/losses, and a
scatter plot (x: full spectrum, y: 50% compression; points above the diagonal favour
compression).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import common, recipes

NAME = "ucr_full_vs_half"
RATE = 0.5
# The 30 fixed-length data sets of the installed archive that are cheapest to train under the
# step budget (estimated cost: steps x batch x length, plus evaluating the test set), in that
# order. The selection favours short series and small training sets; see EXPERIMENTS.md.
DATASETS = (
    "Chinatown",
    "ItalyPowerDemand",
    "MoteStrain",
    "BME",
    "CBF",
    "ECGFiveDays",
    "GunPoint",
    "Fungi",
    "ECG200",
    "ArrowHead",
    "Coffee",
    "DistalPhalanxOutlineAgeGroup",
    "DistalPhalanxTW",
    "MiddlePhalanxOutlineAgeGroup",
    "MiddlePhalanxTW",
    "Crop",
    "ProximalPhalanxOutlineAgeGroup",
    "DistalPhalanxOutlineCorrect",
    "MiddlePhalanxOutlineCorrect",
    "ProximalPhalanxOutlineCorrect",
    "PhalangesOutlinesCorrect",
    "FaceFour",
    "Plane",
    "DiatomSizeReduction",
    "MedicalImages",
    "FreezerSmallTrain",
    "Beef",
    "GunPointOldVersusYoung",
    "GunPointAgeSpan",
    "GunPointMaleVersusFemale",
)
QUICK_DATASETS = ("Chinatown", "ItalyPowerDemand", "MoteStrain")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", default=None, help="comma-separated UCR data sets")
    p.add_argument("--rate", type=float, default=RATE, help="the compressed model's rate")


def run(args, out: Path) -> dict:
    scale = recipes.scale_for(args)
    names = (
        args.datasets.split(",") if args.datasets else (QUICK_DATASETS if args.quick else DATASETS)
    )
    rows = []
    partial = out / f"{NAME}.partial.csv"
    for i, name in enumerate(names):
        d = recipes.ucr(name, scale, args.seed)
        seed = common.model_seed(args.seed, "fcn", name)
        row = {
            "dataset": name,
            "train": len(d.y_train),
            "test": len(d.y_test),
            "length": int(d.x_train.shape[-1]),
            "classes": d.num_classes,
        }
        for label, rate in (("full", 0.0), ("half", args.rate)):
            model, rec = recipes.fit(
                "fcn",
                d,
                scale,
                seed,
                f"[{i + 1}/{len(names)}] {name} rate {rate}",
                progress=not args.no_progress,
                compress_rate=rate,
            )
            ev = common.evaluate(model, d.x_test, d.y_test)
            row[f"acc_{label}"] = ev["acc"]
            row[f"seconds_{label}"] = rec["train_seconds"]
            row["epochs"] = rec["config"].epochs
        row["diff"] = row["acc_half"] - row["acc_full"]
        rows.append(row)
        print(
            f"{name}: full {row['acc_full']:.4f}  {args.rate:g}: {row['acc_half']:.4f}  "
            f"diff {row['diff']:+.4f}",
            flush=True,
        )
        common.write_csv(partial, rows)  # progress survives an interrupted run
    full = np.array([r["acc_full"] for r in rows])
    half = np.array([r["acc_half"] for r in rows])
    test = common.wilcoxon_signed_rank(half, full)
    summary = {
        "datasets": len(rows),
        "rate": args.rate,
        "mean_acc_full": float(full.mean()),
        "mean_acc_half": float(half.mean()),
        "mean_diff": float((half - full).mean()),
        "median_diff": float(np.median(half - full)),
        "wins_half": int((half > full + 1e-12).sum()),
        "ties": int((np.abs(half - full) <= 1e-12).sum()),
        "wins_full": int((full > half + 1e-12).sum()),
        "wilcoxon": test,
        "train_seconds_full": float(sum(r["seconds_full"] for r in rows)),
        "train_seconds_half": float(sum(r["seconds_half"] for r in rows)),
    }
    print(
        f"{len(rows)} data sets: mean acc full {summary['mean_acc_full']:.4f}, rate "
        f"{args.rate:g} {summary['mean_acc_half']:.4f}, mean diff {summary['mean_diff']:+.4f}; "
        f"wins/ties/losses of rate {args.rate:g}: {summary['wins_half']}/{summary['ties']}/"
        f"{summary['wins_full']}; Wilcoxon signed-rank p = {test['p_value']:.4f} (exact), "
        f"{test['p_normal']:.4f} (normal approx.)",
        flush=True,
    )
    files = common.write_outputs(
        out, NAME, rows, _markdown(rows, summary), lambda path: _plot(rows, summary, path)
    )
    if partial.exists():
        partial.unlink()
    return {"experiment": NAME, "rows": rows, "summary": summary, "files": files}


def _markdown(rows, s) -> str:
    body = [
        [
            r["dataset"],
            r["train"],
            r["test"],
            r["length"],
            r["classes"],
            r["epochs"],
            f"{100 * r['acc_full']:.2f}",
            f"{100 * r['acc_half']:.2f}",
            f"{100 * r['diff']:+.2f}",
        ]
        for r in rows
    ]
    t = common.markdown_table(
        body,
        [
            "data set",
            "train",
            "test",
            "length",
            "classes",
            "epochs",
            "full %",
            f"rate {s['rate']:g} %",
            "diff",
        ],
    )
    w = s["wilcoxon"]
    t += (
        f"\nMean test accuracy: full {100 * s['mean_acc_full']:.2f}%, rate {s['rate']:g} "
        f"{100 * s['mean_acc_half']:.2f}%; mean difference {100 * s['mean_diff']:+.2f} points "
        f"(median {100 * s['median_diff']:+.2f}). Rate {s['rate']:g} better / tie / worse: "
        f"{s['wins_half']} / {s['ties']} / {s['wins_full']}. Wilcoxon signed-rank (two-sided, "
        f"{w['n']} non-zero differences): W+ = {w['w_plus']:g}, W- = {w['w_minus']:g}, "
        f"p = {w['p_value']:.4f} exact, {w['p_normal']:.4f} normal approximation.\n"
    )
    return t


def _plot(rows, s, path: Path) -> bool:
    plt = common.pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    full = [100 * r["acc_full"] for r in rows]
    half = [100 * r["acc_half"] for r in rows]
    ax.scatter(full, half, s=18)
    lo = min(full + half + [100.0]) - 3
    ax.plot([lo, 100], [lo, 100], "k--", lw=0.8)
    ax.set_xlim(lo, 101)
    ax.set_ylim(lo, 101)
    ax.set_xlabel("test accuracy %, full spectrum")
    ax.set_ylabel(f"test accuracy %, rate {s['rate']:g}")
    ax.set_title(
        f"FCN on {len(rows)} UCR data sets\nmean diff {100 * s['mean_diff']:+.2f} pts, "
        f"Wilcoxon p = {s['wilcoxon']['p_value']:.3f}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    return common.save_figure(fig, path)
