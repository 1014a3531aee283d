#!/usr/bin/env python3
"""Fuzz target for blfft's Python API (atheris / libFuzzer), issue #14.

Each input chooses one call: blfft.functional.conv1d / conv2d, a blfft.nn.Conv1d / Conv2d module
(constructor, knob setters, forward in train / eval / no_grad, weight changes through .data), or
a call after blfft.set_num_threads / set_saved_spectrum_dtype; then, where the result takes part
in autograd, a backward pass. The arguments cover what a user (or a bug) can pass: every rank,
sizes from 0 to 2**62 (large ones as expanded, zero-stride tensors or on the meta device, so that
nothing large is ever allocated here), float32/float64 and the dtypes blfft refuses, contiguous,
transposed, sliced, channels-last, expanded and overlapping (as_strided) layouts, CPU and meta
tensors mixed, NaN / Inf / huge / tiny values; strides, paddings (up to 2**64, negative, 'same',
'valid', wrong types), dilations, groups, rates (nan, inf, negative, >= 1, denormal) and energy
fractions.

The only allowed outcomes are a result or a Python exception (any Exception). A crash (signal,
abort, std::terminate), an input that runs longer than -timeout, or memory above -rss_limit_mb
is a finding. (Calls whose sizes would make torch's own convolution take seconds and gigabytes
too are not run: see HEAVY. Larger ones are: no machine can hold them, so they must be refused at
once.) So is a result that is plainly wrong: where torch's own convolution also accepts
the arguments and the sizes are small, blfft's output must have torch's shape, dtype and device,
be finite for finite moderate inputs, and at rate 0 equal torch's output (Finding, below).

Every choice is one byte (FuzzedDataProvider.ConsumeIntInRange over fewer than 256 options,
which takes bytes from the end of the input; an exhausted input picks option 0, the benign
default), so the seed files in tests/fuzz/corpus/ and tests/fuzz/regressions/ are short and are
made by tests/fuzz/make_corpus.py from readable descriptions.

CI runs it for a bounded time (tests/py/test_fuzz.py). By hand, longer (from the repo root; new
inputs go to the first folder, crashes to ./crash-*; -jobs/-workers for several processes):

    mkdir -p /tmp/blfft-corpus
    .venv/bin/python tests/fuzz/fuzz_api.py /tmp/blfft-corpus tests/fuzz/corpus \\
        -timeout=10 -rss_limit_mb=4096 -max_len=512 -max_total_time=3600

Replay one input (a crash file, a regression seed) and print what it does:

    .venv/bin/python tests/fuzz/fuzz_api.py --describe crash-<sha1>   # its choices, the call
    .venv/bin/python tests/fuzz/fuzz_api.py crash-<sha1>              # run it once
"""

import sys
import warnings

import torch

try:
    import atheris
except ImportError:  # make_corpus.py and --describe work without atheris
    atheris = None

if atheris is not None and "--describe" not in sys.argv:
    # Coverage feedback from blfft's Python layer (argument checks, dispatch); the C++ core is
    # not instrumented (it would need a -fsanitize=fuzzer build).
    with atheris.instrument_imports(include=["blfft"]):
        import blfft
        import blfft.functional as BF
        import blfft.nn as BN
else:
    import blfft
    import blfft.functional as BF
    import blfft.nn as BN

import torch.nn.functional as F  # noqa: E402


class Finding(Exception):
    """A wrong result: re-raised past the harness's `except Exception`, so libFuzzer reports it."""


# --- choices --------------------------------------------------------------------------------


class Chooser:
    """Every decision is pick(label, options): one byte of the input."""

    def __init__(self, fdp):
        self.fdp = fdp
        self.log = []

    def pick(self, label, options):
        assert 0 < len(options) <= 256
        i = self.fdp.ConsumeIntInRange(0, len(options) - 1) if len(options) > 1 else 0
        self.log.append((label, options[i]))
        return options[i]


class _NoData:
    def ConsumeIntInRange(self, lo, hi):  # noqa: N802 (atheris's spelling)
        return lo


class ScriptedChooser(Chooser):
    """For make_corpus.py: answers from a {label: value} script (option 0 where not given) and
    records the byte of each answer; bytes() is then an input that replays the same choices."""

    def __init__(self, script):
        super().__init__(_NoData())
        self.script = dict(script)
        self.used = set()
        self.indices = []

    def pick(self, label, options):
        i = 0
        if label in self.script:
            want = self.script[label]
            matches = [
                k
                for k, o in enumerate(options)
                if type(o) is type(want) and (o == want or repr(o) == repr(want))
            ]
            if not matches:
                raise ValueError(f"{label}: {want!r} is not among {options!r}")
            i = matches[0]
            self.used.add(label)
        self.indices.append(i)
        self.log.append((label, options[i]))
        return options[i]

    def bytes(self):
        unused = set(self.script) - self.used
        if unused:
            raise ValueError(f"script labels never asked for: {sorted(unused)}")
        return bytes(reversed(self.indices))  # ConsumeIntInRange reads from the end


# --- values -----------------------------------------------------------------------------------

HUGE_SIZES = [2**31, 2**32 + 1, 2**40, 2**51, 2**62]
SIZES = [1, 2, 3, 4, 5, 8, 0, 7, 9, 16, 33, 64, 2048] + HUGE_SIZES
DTYPES = [torch.float32, torch.float64, torch.float32, torch.float64, torch.float16,
          torch.bfloat16, torch.int64, torch.complex64, torch.bool]
VALUES = ["randn", "zeros", "ones", "smooth", "nan", "inf", "huge", "tiny", "denormal"]
MODERATE = {"randn", "zeros", "ones", "smooth"}
MAX_ELEMS = 1 << 14  # elements actually allocated per tensor
BIG_INTS = [2**26, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63)]
NAN, INF = float("nan"), float("inf")


def _numel(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def _fill(shape, values, gen):
    n = _numel(shape)
    if values == "randn":
        return torch.randn(shape, dtype=torch.float64, generator=gen)
    if values == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    if values == "ones":
        return torch.ones(shape, dtype=torch.float64)
    if values == "smooth":
        return torch.randn(shape, dtype=torch.float64, generator=gen).cumsum(-1) if n else \
            torch.zeros(shape, dtype=torch.float64)
    t = torch.randn(shape, dtype=torch.float64, generator=gen)
    if values == "nan":
        return t.masked_fill(t > 1.0, NAN)
    if values == "inf":
        return t.masked_fill(t > 1.0, INF).masked_fill(t < -1.5, -INF)
    if values == "huge":
        return t * 1e37
    if values == "tiny":
        return t * 1e-300
    return t * 5e-324  # denormal (float64; 0 in float32)


def make_tensor(c, name, rank_default, gen):
    """A tensor of a chosen rank, sizes, layout, dtype, device, values; never large in memory."""
    rank = c.pick(f"{name}.rank", [rank_default, rank_default - 1, rank_default + 1, 0, 1, 5])
    dims = [c.pick(f"{name}.d{i}", SIZES) for i in range(rank)]
    layout = c.pick(f"{name}.layout",
                    ["contig", "expand", "transpose", "slice", "as_strided", "channels_last"])
    dtype = c.pick(f"{name}.dtype", DTYPES)
    device = c.pick(f"{name}.device", ["cpu", "cpu", "cpu", "meta"])
    values = c.pick(f"{name}.values", VALUES)
    grad = c.pick(f"{name}.grad", [True, False])
    grad = grad and (dtype.is_floating_point or dtype.is_complex)
    info = dict(dims=dims, layout=layout, dtype=dtype, device=device, values=values)

    if device == "meta":
        base = torch.empty(dims, dtype=dtype, device="meta")
        if grad:
            base.requires_grad_()
        return base, info

    small = _numel(dims) <= MAX_ELEMS
    if layout == "contig" or (not small and layout in ("transpose", "slice", "channels_last")):
        layout = "contig" if small else "expand"
    if layout == "expand":
        # Sizes above 8 are expanded from 1 (stride 0); the rest are real.
        base_shape = [d if d <= 8 else 1 for d in dims]
        if _numel(base_shape) > MAX_ELEMS:
            base_shape = [1] * rank
        base = _fill(base_shape, values, gen).to(dtype)
        if grad:
            base.requires_grad_()
        t = base.expand(dims)
    elif layout == "as_strided":
        # Overlapping memory: strides of 0, 1 or 2 over a small storage.
        strides = [0 if d > 8 else c.pick(f"{name}.s{i}", [1, 0, 2]) for i, d in enumerate(dims)]
        need = 1 + sum((d - 1) * s for d, s in zip(dims, strides) if d > 0)
        base = _fill([max(need, 1)], values, gen).to(dtype)
        if grad:
            base.requires_grad_()
        t = torch.as_strided(base, dims, strides) if 0 not in dims else base[:0].reshape(dims)
    elif layout == "transpose" and rank >= 2:
        base = _fill(dims[:-2] + [dims[-1], dims[-2]], values, gen).to(dtype)
        if grad:
            base.requires_grad_()
        t = base.transpose(-1, -2)
    elif layout == "slice" and rank >= 1:
        base = _fill(dims[:-1] + [2 * dims[-1]], values, gen).to(dtype)
        if grad:
            base.requires_grad_()
        t = base[..., ::2]
    elif layout == "channels_last" and rank == 4:
        base = _fill(dims, values, gen).to(dtype).contiguous(memory_format=torch.channels_last)
        if grad:
            base.requires_grad_()
        t = base
    else:
        t = _fill(dims, values, gen).to(dtype)
        if grad:
            t.requires_grad_()
    info["layout"] = layout
    return t, info


def int_param(c, name, ndim, pool):
    """An int, a tuple (right or wrong length), or a wrong type."""
    kind = c.pick(f"{name}.kind", ["int", "tuple", "int", "tuple1", "tuple3", "list", "odd"])
    if kind == "int":
        return c.pick(f"{name}.v", pool)
    if kind in ("tuple", "list"):
        v = tuple(c.pick(f"{name}.v{i}", pool) for i in range(ndim))
        return list(v) if kind == "list" else v
    if kind == "tuple1":
        return (c.pick(f"{name}.v0", pool),)
    if kind == "tuple3":
        return tuple(c.pick(f"{name}.v{i}", pool) for i in range(3))
    return c.pick(f"{name}.odd", [None, 1.0, True, "1", 2.5, (), torch.tensor(1), [1, None],
                                  float("nan")])


STRIDES = [1, 2, 3, 1, 0, -1, 4, 2048] + BIG_INTS
PADDINGS = [0, 1, 2, 3, 0, -1, 5, 17] + BIG_INTS
DILATIONS = [1, 2, 3, 1, 0, -1, 5] + BIG_INTS
GROUPS = [1, 2, 3, 4, 1, 0, -1, 8, 2**31, 2**62, 2**64, True, 2.0, None, "1"]
RATES = [0.0, 0.5, 0.25, 0.75, 0.0005, 0.9, 0.99, 0.999999, 1e-300, 5e-324, 1e-9, 1.0, -0.0,
         -0.1, 1.5, NAN, INF, -INF, 1, 0, True, "0.5", None, 1 - 2**-53]
ENERGIES = [None, None, None, 0.9, 1.0, 0.5, 0.99, 1e-300, 5e-324, 0.0, -0.5, 1.5, NAN, INF,
            True, 1, 1 - 2**-53, "0.9"]


def padding_param(c, ndim):
    kind = c.pick("padding.str", ["int", "int", "int", "same", "valid", "full", "SAME"])
    if kind == "int":
        return int_param(c, "padding", ndim, PADDINGS)
    return kind


# --- the case ---------------------------------------------------------------------------------


def build_case(c):
    """Draws everything (tensors included) from the chooser; runs nothing of blfft."""
    gen = torch.Generator().manual_seed(0)
    case = {}
    op = c.pick("op", ["functional", "module", "functional", "threads", "saved_dtype"])
    ndim = c.pick("ndim", [1, 2])
    case.update(op=op, ndim=ndim)
    if op == "module":
        case["module"] = dict(
            in_channels=c.pick("m.in", [2, 1, 3, 4, 0, -1, 6]),
            out_channels=c.pick("m.out", [2, 1, 3, 4, 0, -1, 6]),
            kernel_size=int_param(c, "m.kernel", ndim, [3, 1, 2, 5, 0, -1, 7]),
            stride=int_param(c, "m.stride", ndim, STRIDES),
            padding=padding_param(c, ndim),
            dilation=int_param(c, "m.dilation", ndim, DILATIONS),
            groups=c.pick("m.groups", [1, 2, 3, 0, -1, 2**62, 1.0]),
            bias=c.pick("m.bias", [True, False]),
            padding_mode=c.pick("m.padding_mode", ["zeros", "reflect", "replicate", "circular",
                                                   "bad"]),
            dtype=c.pick("m.dtype", [torch.float32, torch.float64, torch.float16, torch.int64]),
            compress_rate=c.pick("m.rate", RATES),
            inference_compress_rate=c.pick("m.irate", [None] + RATES),
            energy=c.pick("m.energy", ENERGIES),
            cache_weight_spectrum=c.pick("m.cache", [False, True]),
        )
        case["m_steps"] = [
            c.pick(f"m.step{i}", ["forward", "eval", "no_grad", "train", "set_rate", "set_energy",
                                  "weight_data", "backward", "end"])
            for i in range(4)
        ]
        case["m_set_rate"] = c.pick("m.set_rate", RATES)
        case["m_set_energy"] = c.pick("m.set_energy", ENERGIES)
    else:
        case["w"], case["w_info"] = make_tensor(c, "w", ndim + 2, gen)
        case["b_kind"] = c.pick("b", ["none", "good", "tensor"])
        if case["b_kind"] == "tensor":
            case["b"], case["b_info"] = make_tensor(c, "b", 1, gen)
        case["stride"] = int_param(c, "stride", ndim, STRIDES)
        case["padding"] = padding_param(c, ndim)
        case["dilation"] = int_param(c, "dilation", ndim, DILATIONS)
        case["groups"] = c.pick("groups", GROUPS)
        case["rate"] = c.pick("rate", RATES)
        case["energy"] = c.pick("energy", ENERGIES)
        case["spelling"] = c.pick("spelling", ["keywords", "positional"])
    case["x"], case["x_info"] = make_tensor(c, "x", ndim + 2, gen)
    case["backward"] = c.pick("backward", ["sum", "randn", "none", "nan_grad", "expanded_grad",
                                           "twice"])
    if op == "threads":
        case["threads"] = c.pick("threads", [1, 2, 3, 0, 64, -1, 2**31 - 1, 2**31, 2**63, 2.5])
    if op == "saved_dtype":
        case["saved_dtype"] = c.pick("saved_dtype", [torch.bfloat16, torch.float16, torch.float32,
                                                     torch.float64, torch.int8, None, "bf16"])
    return case


def _ints(v, ndim):
    """v as a tuple of ndim plain ints, or None where torch would not take it."""
    vs = v if isinstance(v, (tuple, list)) else (v,)
    if not all(type(i) is int for i in vs) or len(vs) not in (1, ndim):
        return None
    return tuple(vs) * (ndim if len(vs) == 1 else 1)


def layer_sizes(ndim, x_shape, w_shape, stride, padding, dilation):
    """(output elements, grid elements) torch's convolution implies for these arguments, or None
    where they are invalid (then blfft must raise, and quickly). The grid is the padded input."""
    if len(w_shape) != ndim + 2 or len(x_shape) not in (ndim + 1, ndim + 2):
        return None
    st, di = _ints(stride, ndim), _ints(dilation, ndim)
    spatial = x_shape[-ndim:]
    kernel = w_shape[2:]
    if padding in ("same", "valid"):
        pad = (0,) * ndim
    else:
        pad = _ints(padding, ndim)
    if st is None or di is None or pad is None or min(st + di) < 1 or min(pad) < 0:
        return None
    out, grid = 1, 1
    for size, k, s, p, d in zip(spatial, kernel, st, pad, di):
        if padding == "same":
            o, g = size, size + d * (k - 1)
        else:
            o, g = (size + 2 * p - d * (k - 1) - 1) // s + 1, size + 2 * p
        if o < 1:
            return None
        out, grid = out * o, grid * g
    batch = x_shape[0] if len(x_shape) == ndim + 2 else 1
    return out * batch * w_shape[0], grid


# A valid call whose size lies between these element counts may legitimately take seconds and
# gigabytes (torch's own convolution would too), so it says nothing about blfft and is not run:
# outputs, tensors (logical size) or spectra (grid x (N*C + F*C/groups + N*F)) over the lower
# bound. Sizes over the upper bound cannot be held by any implementation on this machine and must
# be refused at once (torch does; blfft caps spectra and workspaces): those are run.
HEAVY = (1 << 25, 1 << 34)
HEAVY_MACS = 1 << 31  # the 1x1 kernel path at rate 0 is torch's own convolution: its MACs


def legitimately_heavy(case):
    ndim = case["ndim"]
    x_shape = tuple(case["x"].shape)
    # Tensors of that logical size may be materialised legitimately (a module's padding_mode pads
    # with F.pad first, as torch's module does), whatever the other arguments.
    tensors = [case["x"]] + [case[k] for k in ("w", "b") if isinstance(case.get(k), torch.Tensor)]
    if any(HEAVY[0] < t.numel() <= HEAVY[1] for t in tensors):
        return True
    if case["op"] == "module":
        m = case["module"]
        pad = _ints(m["padding"], ndim)
        kd = (_ints(m["kernel_size"], ndim), _ints(m["dilation"], ndim))
        if m["padding"] == "same" and None not in kd:
            pad = tuple(d * (k - 1) // 2 + 1 for k, d in zip(*kd))
        if m["padding_mode"] != "zeros" and pad is not None and len(x_shape) > ndim:
            # Padded with F.pad before anything else is checked, as torch's module does.
            padded = _numel(x_shape[:-ndim])
            for size, p in zip(x_shape[-ndim:], pad):
                padded *= max(size + 2 * p, 0)
            if HEAVY[0] < padded <= HEAVY[1]:
                return True
        k = _ints(m["kernel_size"], ndim)
        groups = m["groups"]
        if (k is None or type(groups) is not int or groups < 1
                or type(m["in_channels"]) is not int or m["in_channels"] < 0):
            return False
        w_shape = (m["out_channels"], m["in_channels"] // groups) + k
        stride, padding, dilation = m["stride"], m["padding"], m["dilation"]
        torch_path = all(i == 1 for i in k)
    else:
        w_shape = tuple(case["w"].shape)
        stride, padding, dilation, groups = (case["stride"], case["padding"], case["dilation"],
                                             case["groups"])
        rate = case["rate"]
        torch_path = (all(i == 1 for i in w_shape[2:]) and case["energy"] is None
                      and type(rate) in (int, float) and rate == 0)
    sizes = layer_sizes(ndim, x_shape, w_shape, stride, padding, dilation)
    if sizes is None or type(groups) is not int or groups < 1:
        return False
    out, grid = sizes
    n = x_shape[0] if len(x_shape) == ndim + 2 else 1
    c = x_shape[-ndim - 1]
    f = w_shape[0]
    spectra = grid * (n * c + f * w_shape[1] + n * f)
    biggest = max(out, spectra, _numel(x_shape), _numel(w_shape))
    if HEAVY[0] < biggest <= HEAVY[1]:
        return True
    return torch_path and out * _numel(w_shape[1:]) > HEAVY_MACS


def _is_small(t):
    return t.device.type == "cpu" and t.numel() <= MAX_ELEMS


def _small_args(case):
    """Arguments small enough to hand to torch's own convolution as an oracle."""
    def ints(v):
        vs = v if isinstance(v, (tuple, list)) else (v,)
        return all(type(i) is int and 0 <= i <= 64 for i in vs)

    pad = case["padding"]
    return (
        ints(case["stride"])
        and ints(case["dilation"])
        and (isinstance(pad, str) or ints(pad))
        and type(case["groups"]) is int
        and 1 <= case["groups"] <= 64
    )


def _check_result(case, fn_torch, x, w, b, y):
    """A result must be what torch would give where torch accepts the arguments."""
    if not isinstance(y, torch.Tensor):
        raise Finding(f"result is a {type(y).__name__}, not a Tensor")
    if y.dtype != x.dtype or y.device != x.device:
        raise Finding(f"result dtype/device {y.dtype}/{y.device} for input {x.dtype}/{x.device}")
    if not (_is_small(x) and _is_small(w) and (b is None or _is_small(b)) and _small_args(case)):
        return
    try:
        with torch.no_grad():
            yt = fn_torch(x.detach(), w.detach(), None if b is None else b.detach(),
                          case["stride"], case["padding"], case["dilation"], case["groups"])
    except Exception:
        return  # torch refuses: blfft may accept (e.g. it is more lenient), nothing to compare
    if yt.shape != y.shape:
        raise Finding(f"output shape {tuple(y.shape)}, torch gives {tuple(yt.shape)}")
    moderate = all(i.get("values") in MODERATE for i in
                   (case["x_info"], case["w_info"], case.get("b_info", {"values": "randn"})))
    if not moderate or not torch.isfinite(yt).all() or y.numel() == 0:
        return
    yd = y.detach()
    if not torch.isfinite(yd).all():
        raise Finding("non-finite output for finite moderate inputs (torch's is finite)")
    rate, energy = case["rate"], case["energy"]
    if rate in (0, 0.0) and energy is None and type(rate) in (int, float):
        # 16-bit results are float32 results rounded once, as torch's are: the two may differ by
        # one unit in the last place per element, so their relative l2 distance is bounded by
        # the type's eps (2e-4 failed bfloat16 cases at 2.1e-4 with 1 ulp per element).
        if x.dtype in (torch.float16, torch.bfloat16):
            tol = torch.finfo(x.dtype).eps
        else:
            tol = 1e-9 if x.dtype == torch.float64 else 2e-4
        den = yt.double().norm().item()
        err = (yd.double() - yt.double()).norm().item() / (den if den > 0 else 1.0)
        # `smooth` inputs are cumulative sums (up to ~100x the scale of randn): same tolerance.
        if err > tol:
            raise Finding(f"rate 0: relative l2 error {err:.3g} against torch (tol {tol:g})")


def _backward(case, y, inputs):
    kind = case["backward"]
    if kind == "none" or not isinstance(y, torch.Tensor) or not y.requires_grad:
        return
    inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    if not inputs:
        return
    if kind == "sum":
        y.sum().backward()
        return
    if y.device.type == "meta":
        g = torch.empty_like(y)
    elif kind == "nan_grad":
        g = torch.full_like(y, NAN)
    elif kind == "expanded_grad":
        g = torch.ones((1,) * y.dim(), dtype=y.dtype).expand(y.shape)
    else:
        g = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        g = g.to(y.dtype)
    torch.autograd.grad(y, inputs, g, retain_graph=(kind == "twice"), allow_unused=True)
    if kind == "twice":
        torch.autograd.grad(y, inputs, g, allow_unused=True)


def _bias(case):
    if case["b_kind"] == "none":
        return None
    if case["b_kind"] == "good":
        w = case["w"]
        n = w.shape[0] if w.dim() > 0 and w.shape[0] <= MAX_ELEMS else 1
        return torch.randn(n, dtype=torch.float64).to(w.dtype).to(w.device)
    return case["b"]


def run_functional(case):
    fn = BF.conv1d if case["ndim"] == 1 else BF.conv2d
    fn_torch = F.conv1d if case["ndim"] == 1 else F.conv2d
    x, w = case["x"], case["w"]
    b = _bias(case)
    if case["spelling"] == "keywords":
        y = fn(x, w, b, stride=case["stride"], padding=case["padding"],
               dilation=case["dilation"], groups=case["groups"], compress_rate=case["rate"],
               energy=case["energy"])
    else:
        y = fn(x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"],
               compress_rate=case["rate"], energy=case["energy"])
    _check_result(case, fn_torch, x, w, b, y)
    _backward(case, y, [x, w, b])


def run_module(case):
    cls = BN.Conv1d if case["ndim"] == 1 else BN.Conv2d
    m = cls(**case["module"])
    x = case["x"]
    for step in case["m_steps"]:
        if step == "end":
            break
        if step == "eval":
            m.eval()
        elif step == "train":
            m.train()
        elif step == "set_rate":
            m.compress_rate = case["m_set_rate"]
        elif step == "set_energy":
            m.energy = case["m_set_energy"]
        elif step == "weight_data":
            m.weight.data.mul_(2)
        elif step == "no_grad":
            with torch.no_grad():
                m(x)
        elif step in ("forward", "backward"):
            y = m(x)
            if step == "backward":
                _backward(case, y, [x, m.weight, m.bias])
    y = m(x)
    _backward(case, y, [x, m.weight, m.bias])


# The ops that run the functional call under a global setting, case[op], restored afterwards:
# op -> (getter, setter).
_SETTING_OPS = {
    "threads": (blfft.get_num_threads, blfft.set_num_threads),
    "saved_dtype": (blfft.get_saved_spectrum_dtype, blfft.set_saved_spectrum_dtype),
}


def run_case(case):
    op = case["op"]
    if legitimately_heavy(case):
        return
    if op in _SETTING_OPS:
        get, set_ = _SETTING_OPS[op]
        before = get()
        try:
            set_(case[op])
            run_functional(case)
        finally:
            set_(before)
    elif op == "module":
        run_module(case)
    else:
        run_functional(case)


def TestOneInput(data):  # noqa: N802 (atheris's spelling)
    c = Chooser(atheris.FuzzedDataProvider(data))
    try:
        case = build_case(c)
    except Exception:
        return  # the harness could not build these tensors (torch refused): not blfft's business
    try:
        run_case(case)
    except Finding:
        raise
    except Exception:
        pass  # a clean Python exception is an allowed outcome


def describe(data):
    """The choices an input makes, and the call as Python, for a bug report."""

    class _Fdp:
        def __init__(self, b):
            self.b = bytearray(b)

        def ConsumeIntInRange(self, lo, hi):  # noqa: N802
            if not self.b:
                return lo
            v = self.b.pop()  # one byte from the end, as atheris does for ranges < 256
            return lo + v % (hi - lo + 1)

    c = Chooser(_Fdp(data))
    case = build_case(c)
    lines = [f"{label} = {value!r}" for label, value in c.log]
    lines.append("")
    for k in ("x", "w", "b"):
        if f"{k}_info" in case:
            lines.append(f"{k}: {case[k + '_info']}  -> shape {tuple(case[k].shape)} strides "
                         f"{case[k].stride()} requires_grad {case[k].requires_grad}")
    rest = {k: v for k, v in case.items() if k not in ("x", "w", "b", "x_info", "w_info",
                                                         "b_info")}
    lines.append(f"case: {rest}")
    return "\n".join(lines)


def main():
    warnings.simplefilter("ignore")
    if "--describe" in sys.argv:
        for path in sys.argv[sys.argv.index("--describe") + 1:]:
            with open(path, "rb") as f:
                print(f"== {path}\n{describe(f.read())}\n")
        return
    if atheris is None:
        sys.exit("atheris is not installed (bash tools/setup.sh installs it)")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
