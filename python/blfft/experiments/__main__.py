"""``python -m blfft.experiments <name> [--quick] [--out DIR]``: see the package docstring."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import blfft

from . import EXPERIMENTS, common


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m blfft.experiments",
        description="Run one of the paper's experiments on offline data.",
    )
    sub = p.add_subparsers(dest="name", required=True, metavar="name")
    for name, mod in EXPERIMENTS.items():
        # argparse %-formats help strings: a docstring's "50%" must reach it as "50%%".
        summary = mod.__doc__.strip().split("\n")[0].replace("%", "%%")
        sp = sub.add_parser(
            name,
            help=summary,
            description=mod.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.add_argument(
            "--quick",
            action="store_true",
            help="tiny subsets, 1 epoch (seconds; what the tests run)",
        )
        sp.add_argument(
            "--out", default=None, help=f"output folder (default experiments/results/{name})"
        )
        sp.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
        sp.add_argument(
            "--threads",
            type=int,
            default=None,
            help="threads for torch and blfft (default: torch's)",
        )
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        sp.add_argument(
            "--steps", type=int, default=None, help="FCN: optimizer steps per run (250; quick 2)"
        )
        sp.add_argument(
            "--epochs", type=int, default=None, help="ResNet/DenseNet: epochs (3; quick 1)"
        )
        sp.add_argument(
            "--width", type=int, default=None, help="ResNet-18 width (16; the paper's is 64)"
        )
        mod.add_arguments(sp)
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    mod = EXPERIMENTS[args.name]
    out = Path(args.out or f"experiments/results/{args.name}")
    out.mkdir(parents=True, exist_ok=True)
    saved_threads = (torch.get_num_threads(), blfft.get_num_threads())
    threads = common.set_threads(args.threads)
    common.seed_everything(args.seed)
    t0 = time.perf_counter()
    try:
        result = mod.run(args, out)
    finally:  # in-process callers (the tests) get their thread settings back
        torch.set_num_threads(saved_threads[0])
        blfft.set_num_threads(saved_threads[1])
    seconds = time.perf_counter() - t0
    settings = {k: v for k, v in vars(args).items()}
    result["meta"] = common.meta_info(
        experiment=args.name,
        seconds=seconds,
        settings=settings,
        threads=threads,
        command=" ".join(
            ["python -m blfft.experiments"] + list(argv if argv is not None else sys.argv[1:])
        ),
    )
    common.write_json(out / f"{args.name}.json", result)
    print(
        f"{args.name}: done in {seconds:.1f} s; wrote "
        + ", ".join(str(out / f) for f in result["files"]),
        flush=True,
    )
    return result


if __name__ == "__main__":
    main()
    raise SystemExit(0)
