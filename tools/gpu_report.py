"""Merges the GPU check's pieces into one report (standard library only): the machine, the step
log, the blfft and cuDNN benchmark lines, and a markdown summary table. Writes <name>.json (all
of it, the table included as "markdown") and <name>.md (the table alone). tools/gpu_check.sh
calls it after every step, so the report on disk always holds what has finished.

    python3 tools/gpu_report.py --steps STEPS.jsonl --blfft BLFFT.jsonl --cudnn CUDNN.jsonl \
        --machine MACHINE.json --out DIR/NAME [--quiet]
"""

import argparse
import json
import os


def read_lines(path):
    if not path or not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    out.append({"unparsed": line})
    return out


def fmt_ms(v):
    return "-" if v is None else f"{v:.3f}"


def fmt_mb(v):
    return "-" if v is None else f"{v / 2**20:.0f}"


def table(blfft, cudnn):
    """One row per (layer, batch): cuDNN fp32 / TF32 and blfft at each rate."""
    by = {}
    for r in cudnn:
        by.setdefault((r.get("layer"), r.get("batch")), {})[r.get("impl")] = r
    for r in blfft:
        if "error" in r:
            continue
        by.setdefault((r.get("layer"), r.get("batch")), {})[f"blfft@{r.get('rate'):.2f}"] = r
    rates = sorted({r["rate"] for r in blfft if "rate" in r and "error" not in r})
    head = ["layer", "batch", "cuDNN fp32 ms", "cuDNN TF32 ms"]
    for q in rates:
        head += [f"blfft r={q:g} ms", f"vs fp32 (r={q:g})"]
    head += ["peak MB cuDNN / blfft r=0.5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (layer, batch), row in by.items():
        c32 = row.get("cudnn", {}).get("total_ms")
        c19 = row.get("cudnn_tf32", {}).get("total_ms")
        cells = [str(layer), str(batch), fmt_ms(c32), fmt_ms(c19)]
        for q in rates:
            t = row.get(f"blfft@{q:.2f}", {}).get("total_ms")
            cells.append(fmt_ms(t))
            cells.append("-" if (t is None or c32 is None) else f"{c32 / t:.2f}x")
        peak_c = row.get("cudnn", {}).get("peak_bytes")
        peak_b = row.get("blfft@0.50", {}).get("peak_bytes")
        cells.append(f"{fmt_mb(peak_c)} / {fmt_mb(peak_b)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parts_table(blfft, rate=0.5):
    """Time per entry point at one rate (input_grad / weight_grad each transform grad_out)."""
    keys = ["input_spectrum", "weight_spectrum", "forward_spectra", "input_grad", "weight_grad",
            "bias_grad"]
    rows = [r for r in blfft if "parts_ms" in r and abs(r.get("rate", -1) - rate) < 1e-9]
    if not rows:
        return ""
    lines = ["| layer | batch | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for r in rows:
        cells = [str(r["layer"]), str(r["batch"])] + [fmt_ms(r["parts_ms"].get(k)) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps")
    ap.add_argument("--blfft")
    ap.add_argument("--cudnn")
    ap.add_argument("--machine")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quiet", action="store_true", help="do not print the markdown")
    a = ap.parse_args()
    machine = {}
    if a.machine and os.path.exists(a.machine):
        with open(a.machine) as f:
            machine = json.load(f)
    steps = read_lines(a.steps)
    blfft = read_lines(a.blfft)
    cudnn = read_lines(a.cudnn)
    md = [f"# blfft GPU check: {machine.get('gpu', 'unknown GPU')}, {machine.get('date', '')}", ""]
    bundle = machine.get("bundle") or {}
    md.append(f"Commit {machine.get('commit', '?')}"
              f"{' (with local changes)' if bundle.get('dirty_tree') else ''}; "
              f"bundle built {bundle.get('built', '?')} with nvcc {bundle.get('nvcc', '?')} for "
              f"sm {bundle.get('cuda_architectures', '?')}; driver {machine.get('driver', '?')}; "
              f"torch {machine.get('torch', '?')}; {machine.get('seconds', '?')} s.")
    md.append("")
    if machine.get("mode") == "no-gpu":
        md.append("**No GPU: the GPU steps were skipped** (only what needs no GPU ran).")
        md.append("")
    md.append("| step | status | seconds | note |")
    md.append("|---|---|---|---|")
    for s in steps:
        md.append(f"| {s.get('step')} | {s.get('status')} | {s.get('seconds', '-')} | "
                  f"{s.get('note', '')} |")
    md.append("")
    md.append("fwd+bwd (all gradients) median ms per iteration, float32, 3x3 padding 1; "
              "ratios are cuDNN fp32 time / blfft time (> 1: blfft faster).")
    md.append("")
    md.append(table(blfft, cudnn))
    md.append("")
    parts = parts_table(blfft)
    if parts:
        md.append("blfft at r=0.5, each entry point on its own (median ms):")
        md.append("")
        md.append(parts)
        md.append("")
    report = {"machine": machine, "steps": steps, "blfft": blfft, "cudnn": cudnn,
              "markdown": "\n".join(md)}
    with open(a.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    if not a.quiet:
        print("\n".join(md))


if __name__ == "__main__":
    main()
