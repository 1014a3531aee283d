"""Shared pieces of the experiments: seeding, a training loop with a progress line, evaluation
(with optional input noise and the compression the layers actually applied), bytes held for
backward, peak memory, a Wilcoxon signed-rank test, and writers for JSON/CSV/markdown/plots."""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import blfft
from blfft._geometry import geometry
from blfft.data import Dataset
from blfft.nn import Conv1d, Conv2d

# ------------------------------------------------------------------------------------------------
# Set-up
# ------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: Optional[int]) -> int:
    """Threads for torch and blfft (None: keep torch's current number)."""
    n = int(threads or torch.get_num_threads())
    torch.set_num_threads(n)
    blfft.set_num_threads(n)
    return n


def meta_info(**extra) -> dict:
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "blfft": blfft.__version__,
        "threads": torch.get_num_threads(),
        **extra,
    }


# ------------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (tqdm's look, no dependency). On a terminal it redraws
    in place; otherwise (a log file, CI, pytest) it prints the same line, one per line, at most
    every ``log_every`` seconds (default 20 s: a long run shows progress at least every 30 s),
    and :meth:`close` prints one summary line."""

    LOG_EVERY = 20.0

    def __init__(
        self,
        total: int,
        desc: str = "",
        enabled: bool = True,
        stream=None,
        log_every: Optional[float] = None,
    ) -> None:
        self.total, self.desc, self.n = max(1, int(total)), desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_every = self.LOG_EVERY if log_every is None else float(log_every)
        self.start = self._last = self._last_log = time.perf_counter()
        self.postfix = ""

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.n += n
        if postfix:
            self.postfix = postfix
        now = time.perf_counter()
        if self.tty and (now - self._last > 0.2 or self.n >= self.total):
            self._last = now
            self._draw(now)
        elif self.enabled and not self.tty and now - self._last_log >= self.log_every:
            self._last_log = now
            self.stream.write(self._line(now).rstrip() + "\n")
            self.stream.flush()

    def _line(self, now: float) -> str:
        frac = min(1.0, self.n / self.total)
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        return (
            f"{self.desc} [{bar}] {self.n}/{self.total} {elapsed:5.1f}s "
            f"eta {eta:5.1f}s {self.postfix}"
        )

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self._line(now)[:150].ljust(100))
        self.stream.flush()

    def close(self, summary: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self._draw(now)
            self.stream.write("\n")
        if summary:
            self.stream.write(f"{self.desc} {summary}\n")
        self.stream.flush()


# ------------------------------------------------------------------------------------------------
# Training and evaluation
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"  # 'adam' or 'sgd' (momentum 0.9, nesterov)
    weight_decay: float = 0.0
    schedule: str = "cosine"  # 'cosine' (per step, to 0) or 'constant'
    seed: int = 0


def _batches(n: int, batch_size: int, generator: Optional[torch.Generator]):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        if generator is not None and len(idx) < 2 and n >= 2:
            continue  # batch norm needs two samples in training mode
        yield idx


def train_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: TrainConfig,
    desc: str = "train",
    progress: bool = True,
    on_epoch: Optional[Callable[[int, dict], None]] = None,
) -> dict:
    """Trains `model` on (x, y) with cross-entropy; returns the history (per epoch: loss, train
    accuracy, seconds) and the mean seconds per epoch. Shuffling is seeded with ``cfg.seed``."""
    g = torch.Generator().manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    n = len(y)
    steps_per_epoch = max(1, sum(1 for _ in _batches(n, cfg.batch_size, torch.Generator())))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
        )
    elif cfg.schedule == "constant":
        sched = None
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    history = []
    bar = Progress(total_steps, desc, enabled=progress)
    model.train()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for idx in _batches(n, cfg.batch_size, g):
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(1, f"epoch {epoch + 1}/{cfg.epochs} loss {loss_sum / seen:.4f}")
        rec = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        if on_epoch is not None:
            on_epoch(epoch, rec)
    last = history[-1] if history else {}
    bar.close(
        f"done: {cfg.epochs} epochs, loss {last.get('loss', float('nan')):.4f}, "
        f"train acc {last.get('train_acc', float('nan')):.3f}, "
        f"{sum(h['seconds'] for h in history):.1f}s"
    )
    return {
        "history": history,
        "epoch_seconds": float(np.mean([h["seconds"] for h in history])) if history else 0.0,
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "steps": total_steps,
    }


def blfft_layers(model: nn.Module) -> List[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (Conv1d, Conv2d))]


def _achieved_rates(model: nn.Module) -> List[float]:
    report = blfft.compression_report(model)
    return [r["achieved_rate"] for r in report if r["achieved_rate"] is not None]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int = 256,
    noise_sigma: float = 0.0,
    noise_seed: int = 0,
) -> dict:
    """Test accuracy in eval mode, optionally with Gaussian noise N(0, sigma^2) added to the
    inputs (seeded), and the compression the blfft layers applied: the mean over layers of the
    achieved rate, averaged over batches (energy mode picks it per batch)."""
    model.eval()
    g = torch.Generator().manual_seed(noise_seed)
    correct, rates = 0, []
    for i in range(0, len(y), batch_size):
        xb = x[i : i + batch_size]
        if noise_sigma > 0:
            xb = xb + noise_sigma * torch.randn(xb.shape, generator=g, dtype=xb.dtype)
        out = model(xb)
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
        layer_rates = _achieved_rates(model)
        if layer_rates:
            rates.append(float(np.mean(layer_rates)))
    model.train()
    return {
        "acc": correct / max(1, len(y)),
        "achieved_rate": float(np.mean(rates)) if rates else 0.0,
    }


def held_for_backward(model: nn.Module, x: Tensor) -> dict:
    """Bytes of the distinct storages autograd keeps for backward after one training-mode
    forward of `x` (counted with saved_tensors_hooks): in total, and those saved while a
    convolution module ran (its input or the input's compressed spectrum, and the weight or its
    spectrum). Each is split by kind into what does not grow with the batch (parameters, and
    blfft's weight spectra: 1-D tensors of the layer's weight-spectrum size) and the rest, which
    does (``*_fixed_bytes``, ``*_batch_bytes``). Parameters count, as autograd holds them too."""
    # A batch sliced from a data set is a view of the whole set's storage: a layer that saves its
    # input would be charged for all of it. A copy has a storage of its own, of the batch's size.
    x = x.clone(memory_format=torch.contiguous_format)
    seen: Dict[int, int] = {}
    conv_seen: Dict[int, int] = {}
    fixed = {p.untyped_storage().data_ptr() for p in model.parameters()}
    running: List[list] = []  # per convolution being run: [(storage key, dim, numel)]

    def pack(t):
        if t.device.type != "meta" and t.numel() > 0:
            s = t.untyped_storage()
            key = s.data_ptr()
            seen[key] = s.nbytes()
            if running:
                conv_seen[key] = s.nbytes()
                running[-1].append((key, t.dim(), t.numel()))
        return t

    def done(m, *_):
        saved = running.pop()
        size = _w_spectrum_size(m)
        fixed.update(key for key, dim, numel in saved if dim == 1 and numel == size)

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    handles = []
    for m in convs:
        handles.append(m.register_forward_pre_hook(lambda *_: running.append([])))
        handles.append(m.register_forward_hook(done))
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        del out
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {"held_bytes": int(sum(seen.values())), "held_conv_bytes": int(sum(conv_seen.values()))}
    out["held_fixed_bytes"] = int(sum(n for k, n in seen.items() if k in fixed))
    out["held_conv_fixed_bytes"] = int(sum(n for k, n in conv_seen.items() if k in fixed))
    out["held_batch_bytes"] = out["held_bytes"] - out["held_fixed_bytes"]
    out["held_conv_batch_bytes"] = out["held_conv_bytes"] - out["held_conv_fixed_bytes"]
    return out


def _w_spectrum_size(conv: nn.Module) -> Optional[int]:
    """Size of the weight spectrum of a blfft layer's last call (None for other layers)."""
    last = getattr(conv, "last_call", None)
    if last is None:
        return None
    r = last[1]
    g = geometry(r.x_shape, r.w_shape, r.stride, r.padding, r.dilation, r.groups, r.rate, r.band)[2]
    return int(g.w_spectrum_size)


def held_split(model: nn.Module, x: Tensor) -> dict:
    """:func:`held_for_backward` at batch B (the batch `x`), with the split by kind into the part
    that grows with the batch (activations, or their spectra) and the part that does not
    (weights and weight spectra). By kind, not by measuring at B and 2B: blfft's choice of
    keeping a weight spectrum depends on the batch, which would move it between the parts."""
    return held_for_backward(model, x)


def peak_rss_during(fn: Callable[[], object]) -> Optional[int]:
    """Peak resident memory above the starting point while `fn` runs (Linux: the high-water mark
    is reset through /proc/self/clear_refs); None where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        start = _status_kb("VmRSS")
    except OSError:
        fn()
        return None
    fn()
    try:
        return max(0, (_status_kb("VmHWM") - start) * 1024)
    except OSError:
        return None


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(key)


# ------------------------------------------------------------------------------------------------
# UCR training recipe (shared by the FCN experiments)
# ------------------------------------------------------------------------------------------------


def ucr_train_config(n_train: int, steps: int, seed: int, min_epochs: int = 1) -> TrainConfig:
    """Wang et al.'s batch size min(N/10, 16) (at least 4), Adam at 1e-3 with a cosine decay,
    and as many epochs as it takes to make about `steps` optimizer steps (the paper trains for
    thousands of epochs; a fixed step budget keeps runs on this CPU short and comparable)."""
    batch = max(4, min(16, n_train // 10))
    per_epoch = max(1, math.ceil(n_train / batch))
    epochs = max(min_epochs, math.ceil(steps / per_epoch))
    return TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, optimizer="adam", seed=seed)


def fashion_train_config(epochs: int, seed: int, batch_size: int = 64) -> TrainConfig:
    """ResNet-18 on Fashion-MNIST: SGD with Nesterov momentum, lr 0.05 with a cosine decay,
    weight decay 5e-4 (the usual CIFAR recipe, shortened)."""
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=0.05,
        optimizer="sgd",
        weight_decay=5e-4,
        seed=seed,
    )


def model_seed(seed: int, *parts) -> int:
    """A seed derived from the run's seed and a description (stable across runs/processes)."""
    h = seed
    for p in parts:
        for ch in str(p):
            h = (h * 1000003 + ord(ch)) % (2**31 - 1)
    return h


def dataset_summary(d: Dataset) -> dict:
    return {
        "name": d.name,
        "train": int(len(d.y_train)),
        "test": int(len(d.y_test)),
        "input_shape": list(d.input_shape),
        "classes": int(d.num_classes),
    }


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided Wilcoxon signed-rank test of the paired differences a - b.

    Zero differences are dropped (Wilcoxon's method), tied absolute differences get average
    ranks. The p-value is exact: the null distribution of W+ (the sum of the ranks of the
    positive differences) given those ranks, over all 2^n equally likely sign patterns, counted
    by dynamic programming on doubled ranks (so it stays exact with ties). A normal approximation
    with tie correction is reported too. scipy is used for neither."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.abs(d) > 1e-12]
    n = int(len(d))
    out = {"n": n, "n_zero": int(len(a) - n), "w_plus": 0.0, "w_minus": 0.0}
    if n == 0:
        out.update(p_value=1.0, p_normal=1.0, z=0.0)
        return out
    absd = np.abs(d)
    order = np.argsort(absd, kind="mergesort")
    ranks = np.empty(n)
    sorted_abs = absd[order]
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(sorted_abs[j + 1] - sorted_abs[i]) <= 1e-12:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    # Exact: distribution of the sum of a random subset of the (doubled, integer) ranks.
    r2 = np.rint(2 * ranks).astype(np.int64)
    total = int(r2.sum())
    counts = np.zeros(total + 1, dtype=np.float64)
    counts[0] = 1.0
    for r in r2:
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[: total + 1 - r]
        counts = counts + shifted
    probs = counts / counts.sum()
    w2 = int(round(2 * w_plus))
    p_low = float(probs[: w2 + 1].sum())
    p_high = float(probs[w2:].sum())
    p_exact = min(1.0, 2 * min(p_low, p_high))
    # Normal approximation with tie correction.
    mean = n * (n + 1) / 4
    _, tie_counts = np.unique(ranks, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float(((tie_counts**3 - tie_counts) / 48).sum())
    z = (w_plus - mean) / math.sqrt(var) if var > 0 else 0.0
    p_normal = math.erfc(abs(z) / math.sqrt(2))
    out.update(w_plus=w_plus, w_minus=w_minus, p_value=p_exact, p_normal=p_normal, z=z)
    return out


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=_json_default) + "\n")
    return path


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: Path, rows: Iterable[dict], columns: Optional[List[str]] = None) -> Path:
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if columns is None:
        columns = list(
            dict.fromkeys(k for r in rows for k in r if not isinstance(r[k], (list, dict)))
        )
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in columns})
    return path


def _csv_value(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_model_panels(rows, path: Path, nrows: int, height: float, draw: Callable) -> bool:
    """One column of `nrows` axes per (model, dataset) pair of `rows` (in order of appearance),
    each drawn by ``draw(axes_column, model, dataset, rows_of_that_pair)``; written to `path`.
    False (nothing written) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    panels = list(dict.fromkeys((r["model"], r["dataset"]) for r in rows))
    fig, axes = plt.subplots(nrows, len(panels), figsize=(4.4 * len(panels), height), squeeze=False)
    for j, (model, ds) in enumerate(panels):
        sel = [r for r in rows if r["model"] == model and r["dataset"] == ds]
        draw([axes[i][j] for i in range(nrows)], model, ds, sel)
    return save_figure(fig, path)


def add_model_arguments(p, fcn_dataset: str) -> None:
    """--models and --dataset, as the experiments on one FCN data set and the image models take
    them."""
    p.add_argument("--models", default="fcn,resnet", help="fcn, resnet, densenet (comma-separated)")
    p.add_argument("--dataset", default=None, help=f"UCR data set for the FCN ({fcn_dataset})")


def accuracy_row(kind: str, data, rec: dict, ev: dict, **setting) -> dict:
    """One result row of an accuracy experiment: model, dataset, the `setting` (rates, noise),
    the test accuracy and the training's epochs and seconds."""
    return {
        "model": kind,
        "dataset": data.name,
        **setting,
        "test_acc": ev["acc"],
        "epochs": rec["config"].epochs,
        "train_seconds": rec["train_seconds"],
    }


def print_accuracies(prefix: str, label: str, settings, accs) -> None:
    """``<prefix>: <label> <setting>: <acc>, ...`` on one line (progress of a long run)."""
    pairs = ", ".join(f"{label} {s}: {a:.4f}" for s, a in zip(settings, accs, strict=True))
    print(f"{prefix}: {pairs}", flush=True)


def save_figure(fig, path: Path) -> bool:
    """Lays out, writes (110 dpi) and closes a matplotlib figure; True (a figure was written)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return True


def write_outputs(out: Path, name: str, rows, markdown: str, plot: Callable[[Path], bool]):
    """Writes ``<name>.csv`` (the rows) and ``<name>.md``, and ``<name>.png`` where ``plot(path)``
    draws one (it returns False without matplotlib). Returns the file names of the record,
    ``<name>.json`` (which the runner writes) first."""
    write_csv(out / f"{name}.csv", rows)
    (out / f"{name}.md").write_text(markdown)
    files = [f"{name}.json", f"{name}.csv", f"{name}.md"]
    if plot(out / f"{name}.png"):
        files.append(f"{name}.png")
    return files


def markdown_table(rows: List[List[str]], header: List[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
