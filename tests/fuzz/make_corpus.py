#!/usr/bin/env python3
"""Writes the fuzz target's seed inputs from readable descriptions (see fuzz_api.py: every choice
is one byte, so a seed is the list of its choices).

- corpus/: valid and near-valid calls the fuzzer starts from (it mutates them);
- regressions/: the reproductions of bugs found so far (issue #14 and the fuzzer's own finds);
  tests/py/test_fuzz.py replays each one and requires a result or a Python exception.

    python tests/fuzz/make_corpus.py           # (re)write the files
    python tests/fuzz/make_corpus.py --check   # exit 1 if a file differs from its description

A label not given takes option 0 of its list (the benign default). Adding a regression: describe
the failing input here (`fuzz_api.py --describe crash-...` prints its choices), run this script.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.argv.append("--describe")  # fuzz_api: no atheris instrumentation needed here
import fuzz_api  # noqa: E402
import torch  # noqa: E402

sys.argv.remove("--describe")


def tensor(name, dims, layout="contig", **kw):
    d = {f"{name}.rank": len(dims), f"{name}.layout": layout}
    # fuzz_api offers ranks [default, default-1, default+1, 0, 1, 5]: the script names the value.
    d.update({f"{name}.d{i}": v for i, v in enumerate(dims)})
    d.update({f"{name}.{k}": v for k, v in kw.items()})
    return d


def tup(name, values):
    d = {f"{name}.kind": "tuple"}
    d.update({f"{name}.v{i}": v for i, v in enumerate(values)})
    return d


def one(name, v):
    return {f"{name}.kind": "int", f"{name}.v": v}


CORPUS = {
    "conv2d_rate": {
        "op": "functional", "ndim": 2,
        **tensor("w", [4, 3, 3, 3]), "b": "good",
        **one("stride", 1), "padding.str": "int", **one("padding", 1), **one("dilation", 1),
        "groups": 1, "rate": 0.5, **tensor("x", [2, 3, 8, 9]), "backward": "randn",
    },
    "conv2d_exact_strided": {
        "op": "functional", "ndim": 2,
        **tensor("w", [4, 2, 3, 2]),
        **tup("stride", [2, 1]), "padding.str": "int", **tup("padding", [1, 2]),
        **tup("dilation", [2, 1]), "groups": 2, "rate": 0.0,
        **tensor("x", [2, 4, 9, 7], layout="slice", dtype=torch.float64),
        "backward": "sum",
    },
    "conv1d_energy_groups": {
        "op": "functional", "ndim": 1,
        **tensor("w", [4, 1, 5]), "b": "good", **one("stride", 2), "padding.str": "same",
        **one("dilation", 2), "groups": 2, "energy": 0.9, **tensor("x", [3, 2, 33],
                                                                 values="smooth"),
        "backward": "twice",
    },
    "conv1d_expanded": {
        "op": "functional", "ndim": 1,
        **tensor("w", [2, 2, 3], layout="expand"), **one("stride", 1),
        "padding.str": "int", **one("padding", 2), **one("dilation", 1), "rate": 0.75,
        **tensor("x", [1, 2, 8], layout="as_strided", **{"s0": 0, "s1": 1, "s2": 2}),
        "backward": "expanded_grad",
    },
    "module_cached": {
        "op": "module", "ndim": 2, "m.in": 2, "m.out": 4, "m.kernel.kind": "int", "m.kernel.v": 3,
        "m.stride.kind": "int", "m.stride.v": 1, "padding.str": "int", "padding.kind": "int",
        "padding.v": 1, "m.dilation.kind": "int", "m.dilation.v": 1, "m.rate": 0.5,
        "m.cache": True, "m.step0": "no_grad", "m.step1": "weight_data", "m.step2": "no_grad",
        "m.step3": "eval", **tensor("x", [2, 2, 8, 8]), "backward": "none",
    },
    "module_reflect_energy": {
        "op": "module", "ndim": 1, "m.in": 3, "m.out": 3, "m.kernel.kind": "int",
        "m.kernel.v": 5, "m.stride.kind": "int", "m.stride.v": 2, "padding.str": "int",
        "padding.kind": "int", "padding.v": 2, "m.dilation.kind": "int", "m.dilation.v": 1,
        "m.groups": 3, "m.padding_mode": "reflect", "m.dtype": torch.float64,
        "m.energy": 0.99, "m.step0": "forward", "m.step1": "set_rate", "m.set_rate": 0.25,
        "m.step2": "backward", "m.step3": "end", **tensor("x", [2, 3, 16]), "backward": "sum",
    },
    "threads": {
        "op": "threads", "ndim": 1, **tensor("w", [8, 4, 3]), **one("stride", 1),
        "padding.str": "int", **one("padding", 1), **one("dilation", 1), "rate": 0.25,
        **tensor("x", [4, 4, 2048]), "backward": "randn", "threads": 3,
    },
    "saved_bf16": {
        "op": "saved_dtype", "ndim": 2, **tensor("w", [3, 2, 3, 3]), **one("stride", 1),
        "padding.str": "int", **one("padding", 1), **one("dilation", 1), "rate": 0.5,
        **tensor("x", [2, 2, 9, 8], layout="channels_last"), "backward": "randn",
        "saved_dtype": torch.bfloat16,
    },
}

REGRESSIONS = {
    # Issue #14, crash (1): aligned_buffer byte count wraps size_t -> heap-buffer-overflow, SIGSEGV
    # (without gradients: with requires_grad, torch refuses the saved tensor's size first).
    "issue14_size_t_wrap_expanded_channels": {
        "op": "functional", "ndim": 1,
        **tensor("w", [1, 2**51, 2], layout="expand", grad=False), **one("stride", 2048),
        "padding.str": "int", **one("padding", 0), **one("dilation", 1), "rate": 0.0005,
        **tensor("x", [1, 2**51, 2048], layout="expand", grad=False), "backward": "none",
    },
    # Issue #14, hang: conv2d(padding=(2**40, 2**40)) scans for a fast size for minutes (GIL held);
    # torch refuses at once.
    "issue14_padding_2pow40_conv2d": {
        "op": "functional", "ndim": 2, **tensor("w", [1, 1, 3, 3]), **one("stride", 1),
        "padding.str": "int", **tup("padding", [2**40, 2**40]), **one("dilation", 1),
        **tensor("x", [1, 1, 8, 8]), "backward": "none",
    },
    # Found by this fuzzer: padding='same' with a dilation of 2**40 on a length-1 input hangs
    # (the same scan); torch returns its (1, 3, 1) output at once.
    "fuzz_same_padding_dilation_2pow40": {
        "op": "functional", "ndim": 1, **tensor("w", [3, 1, 5]), **one("stride", 1),
        "padding.str": "same", **one("dilation", 2**40), **tensor("x", [1, 1, 1]),
        "backward": "none",
    },
    # Found by this fuzzer: a 2**31-tall expanded kernel with padding='same' on a 1x1 input works
    # for 30 s and > 4 GiB before std::bad_alloc (MemoryError); torch refuses at once (it would
    # need 64 GiB), and the output is (1, 2, 1, 1). (Found with width 4; 8 here, so that the
    # weight's logical size is above fuzz_api.HEAVY and the input is not skipped.)
    "fuzz_same_padding_tall_expanded_kernel": {
        "op": "functional", "ndim": 2, **tensor("w", [2, 1, 2**31, 8], layout="expand"),
        "stride.kind": "tuple1", "stride.v0": 1, "padding.str": "same",
        **tup("dilation", [1, 1]), **tensor("x", [1, 1, 1, 1]), "backward": "sum",
    },
    # Found by this fuzzer: an input 2**40 tall (expanded) with stride 2**31 has a (1, 2, 512, 1)
    # output, but blfft works on it for minutes; torch refuses at once (it would need 64 TiB).
    "fuzz_tall_expanded_input_stride_2pow31": {
        "op": "functional", "ndim": 2, **tensor("w", [2, 2, 3, 3], grad=False),
        **one("stride", 2**31), "padding.str": "int", **one("padding", 0), **one("dilation", 1),
        "rate": 0.5, **tensor("x", [1, 2, 2**40, 8], layout="expand", grad=False),
        "backward": "none",
    },
    # Found by this fuzzer: energy selection over an expanded batch of 2**51 runs for minutes;
    # with compress_rate instead, blfft refuses at once (as torch does: the output cannot exist).
    "fuzz_energy_huge_expanded_batch": {
        "op": "functional", "ndim": 1, **tensor("w", [1, 1, 1], grad=False),
        **one("stride", 1), "padding.str": "int", **one("padding", 0), **one("dilation", 1),
        "energy": 0.9, **tensor("x", [2**51, 1, 1], layout="expand", values="zeros", grad=False),
        "backward": "none",
    },
    # Found by this fuzzer: a 1x1 kernel at rate 0 runs as torch's own conv2d, whose backward
    # segfaults (torch 2.13) for strides from 2**16 up; blfft inherits the crash. A stride beyond
    # the padded input gives the same result as one equal to it.
    "fuzz_1x1_rate0_stride_2pow26_backward": {
        "op": "functional", "ndim": 2, **tensor("w", [1, 2, 1, 1], grad=False),
        **one("stride", 2**26), "padding.str": "int", **one("padding", 0), **one("dilation", 1),
        "rate": 0.0, **tensor("x", [2, 2, 1, 1]), "backward": "sum",
    },
    # Found by this fuzzer: an empty batch with a weight of 2**40 output channels (expanded) runs
    # for minutes (the empty-batch path sums the whole weight to link it into the graph); torch
    # refuses at once.
    "fuzz_empty_batch_huge_expanded_weight": {
        "op": "functional", "ndim": 1, **tensor("w", [2**40, 1, 1], layout="expand"),
        **one("stride", 1), "padding.str": "int", **one("padding", 2), **one("dilation", 2),
        "rate": 0.75, **tensor("x", [0, 1, 2], grad=False), "backward": "none",
    },
    # Found by this fuzzer in CI: a bfloat16 layer at rate 0 is torch's result to one unit in the
    # last place per element (both round a float32 result once), 2.1e-4 in relative l2; the
    # oracle's float32 tolerance (2e-4) was wrong for 16-bit types, not blfft.
    "fuzz_bf16_rate0_one_ulp_of_torch": {
        "op": "functional", "ndim": 2,
        **tensor("w", [4, 1, 2, 1], layout="channels_last", dtype=torch.bfloat16, values="smooth"),
        "b": "none", **tup("stride", [1, 1]), "padding.str": "int", **one("padding", 0),
        **one("dilation", 1), "groups": 1, "rate": 0.0, "spelling": "positional",
        **tensor("x", [2, 1, 33, 2], dtype=torch.bfloat16, grad=False), "backward": "sum",
    },
    # Found by this fuzzer in CI: a module given a 3-tuple padding for a 2D layer (torch keeps it)
    # with padding_mode='replicate' padded the channel axis too, by 2**31 - 1: F.pad asked for a
    # 17 GB tensor (4 GiB RSS under the fuzzer's limit) before any check; now refused at
    # construction, naming padding.
    "fuzz_module_padding_3tuple_for_2d_replicate": {
        "op": "module", "ndim": 2, "m.in": 2, "m.out": 4, **one("m.kernel", 3),
        **one("m.stride", 1), "padding.str": "int", "padding.kind": "tuple3",
        "padding.v0": 2**31 - 1, "padding.v1": 0, "padding.v2": 0, **one("m.dilation", 1),
        "m.groups": 2, "m.bias": True, "m.padding_mode": "replicate", "m.dtype": torch.float32,
        "m.rate": 0.0, "m.irate": None, "m.energy": None, "m.cache": False,
        "m.step0": "forward", "m.step1": "forward", "m.step2": "forward", "m.step3": "forward",
        "m.set_rate": 0.0, "m.set_energy": None, **tensor("x", [1, 1, 1, 1]), "backward": "sum",
    },
}


def encode(script):
    c = fuzz_api.ScriptedChooser(script)
    fuzz_api.build_case(c)
    return c.bytes()


def main():
    check = "--check" in sys.argv
    stale = []
    for folder, table in (("corpus", CORPUS), ("regressions", REGRESSIONS)):
        path = os.path.join(HERE, folder)
        os.makedirs(path, exist_ok=True)
        for name, script in table.items():
            data = encode(script)
            f = os.path.join(path, name)
            old = open(f, "rb").read() if os.path.exists(f) else None
            if old != data:
                stale.append(f)
                if not check:
                    with open(f, "wb") as fh:
                        fh.write(data)
        known = set(table)
        for f in sorted(os.listdir(path)):
            if f not in known:
                stale.append(os.path.join(path, f) + " (not described in make_corpus.py)")
    if stale:
        print(("stale:\n  " if check else "written:\n  ") + "\n  ".join(stale))
        if check:
            sys.exit(1)


if __name__ == "__main__":
    main()
