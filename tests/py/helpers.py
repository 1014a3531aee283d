"""Shared test helpers: tolerances and comparisons, the test cases' tensors, a small model."""

import torch
import torch.nn as tnn

import blfft

# Relative l2 error allowed against a float64 oracle, per dtype of the computation.
REL_TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, (a.shape, b.shape)
    assert not torch.isnan(a).any(), "NaN in result"
    den = b.norm().item()
    num = (a - b).norm().item()
    return num / den if den > 0 else num


def assert_close(a, b, dtype, what=""):
    err = rel_l2(a, b)
    assert err <= REL_TOL[dtype], f"{what}: relative l2 error {err:.3g} > {REL_TOL[dtype]:.1g}"


def case_tensors(ndim, case):
    """float64 input, weight and bias (or None) of a (n, c, f, size, k, stride, padding, dilation,
    groups, has_bias) case, and its convolution keywords."""
    n, c, f, size, k, stride, padding, dilation, groups, has_bias = case
    spatial = (size,) if ndim == 1 else size
    kernel = (k,) if ndim == 1 else k
    x = torch.randn(n, c, *spatial, dtype=torch.float64)
    w = torch.randn(f, c // groups, *kernel, dtype=torch.float64)
    b = torch.randn(f, dtype=torch.float64) if has_bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, b, kw


class Net(tnn.Module):
    """2D and 1D blfft layers at several rates, with torch layers between (compile tests)."""

    def __init__(self):
        super().__init__()
        self.c1 = blfft.nn.Conv2d(3, 8, 3, padding=1, compress_rate=0.5)
        self.c2 = blfft.nn.Conv2d(
            8, 8, 3, stride=2, padding=1, compress_rate=0.3, inference_compress_rate=0.0
        )
        self.c3 = blfft.nn.Conv1d(8, 4, 3, padding=1, compress_rate=0.5)
        self.fc = tnn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = self.c3(x.flatten(2))
        return self.fc(x.mean(-1))


def train_step(fn, model, x):
    """One forward (through fn) and backward of model's parameters: (output, {name: grad})."""
    model.zero_grad(set_to_none=True)
    out = fn(x)
    out.square().sum().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def conv_backward_args(g, x, w):
    """Arguments of blfft::conv_backward for opcheck: the (2, 3, 8, 7) input x and (4, 3, 3, 3)
    weight w of a stride-1, padding-1 call at rate 0.5, no spectra kept, every gradient asked."""
    shapes = ([2, 3, 8, 7], [4, 3, 3, 3], [1, 1], [1, 1], [1, 1], 1, 0.5, [])
    return (g, x.detach(), None, w.detach(), None) + shapes + (True, True, True)


def torch_op_samples(name, dtype=torch.float64):
    """torch's own OpInfo sample inputs of `name` (e.g. "nn.functional.conv_transpose2d") on the
    CPU: (input, args, kwargs) triples. torch's test package imports `expecttest` (a test-only
    dependency, not installed with torch) for its TestCase base class only; a stand-in with
    unittest's TestCase is installed when it is missing."""
    import sys
    import types
    import unittest

    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase
            sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if op.name == name]
    assert ops, f"torch has no OpInfo named {name}"
    return [(s.input, s.args, s.kwargs) for s in ops[0].sample_inputs("cpu", dtype)]


def check_against_opinfo_samples(ours, theirs, name, dtype, min_samples):
    """`ours` against torch's `theirs` on torch's own OpInfo samples of `name` (at least
    `min_samples` of them): the output and the gradients of every tensor argument, ours computed
    in `dtype`, torch's in float64."""
    samples = torch_op_samples(name, torch.float64)
    assert len(samples) >= min_samples
    for x, args, kwargs in samples:
        tensors = [x] + [a for a in args if isinstance(a, torch.Tensor)]
        ref_in = [t.detach().clone().requires_grad_() for t in tensors]
        our_in = [t.detach().to(dtype).requires_grad_() for t in tensors]

        def rebuild(ins, args=args):
            it = iter(ins[1:])
            return ins[0], [next(it) if isinstance(a, torch.Tensor) else a for a in args]

        rx, rargs = rebuild(ref_in)
        ox, oargs = rebuild(our_in)
        yr = theirs(rx, *rargs, **kwargs)
        y = ours(ox, *oargs, **kwargs)
        what = f"{tuple(x.shape)} {kwargs}"
        assert y.dtype == dtype and y.shape == yr.shape, what
        assert_close(y, yr, dtype, f"output {what}")
        gy = torch.randn_like(yr)
        for a, r in zip(
            torch.autograd.grad(y, our_in, gy.to(dtype)),
            torch.autograd.grad(yr, ref_in, gy),
            strict=True,
        ):
            assert_close(a, r, dtype, f"gradient {what}")
