"""compress_rate=0: blfft equals torch.nn.functional.conv1d/conv2d (outputs and all gradients)."""

import pytest
import torch
import torch.nn.functional as F

import blfft.functional as BF
from helpers import assert_close, case_tensors

# torch itself warns that its 'same' padding with even kernels copies the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

DTYPES = [torch.float64, torch.float32]

# (N, C, F, spatial, kernel, stride, padding, dilation, groups, bias)
CASES_2D = [
    (2, 3, 4, (9, 11), (3, 3), 1, 1, 1, 1, True),
    (2, 3, 5, (13, 10), (3, 3), 2, 1, 1, 1, True),
    (1, 4, 6, (12, 9), (5, 3), (2, 3), (2, 0), 1, 2, False),
    (2, 2, 3, (11, 13), (3, 3), 1, 2, 2, 1, True),
    (2, 4, 4, (8, 8), (3, 3), 1, "same", 1, 4, True),  # depthwise
    (1, 3, 2, (10, 9), (4, 2), 1, "same", (1, 2), 1, True),  # even kernel: asymmetric padding
    (2, 3, 3, (7, 12), (2, 4), 1, "same", 2, 1, False),
    (2, 2, 4, (9, 7), (3, 2), (1, 2), "valid", 1, 2, True),
    (3, 1, 2, (5, 6), (1, 1), 1, 0, 1, 1, True),  # 1x1
    (1, 2, 2, (7, 7), (7, 7), 1, 0, 1, 1, True),  # kernel as large as the input
    (2, 6, 3, (10, 11), (3, 1), 3, (1, 4), (2, 1), 3, True),
]

CASES_1D = [
    (2, 3, 4, 17, 3, 1, 1, 1, 1, True),
    (2, 4, 6, 21, 5, 2, 2, 1, 2, True),
    (1, 3, 3, 16, 4, 1, "same", 1, 1, True),  # even kernel: asymmetric padding
    (2, 2, 4, 15, 3, 3, 0, 2, 2, False),
    (3, 2, 2, 12, 2, 1, "valid", 3, 1, True),
    (2, 4, 4, 9, 3, 1, "same", 2, 4, True),
]


def _run(fn_blfft, fn_torch, ndim, case, dtype):
    x, w, b, kw = case_tensors(ndim, case)
    has_bias = b is not None

    # The oracle: torch in float64.
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    br = b.clone().requires_grad_() if has_bias else None
    yr = fn_torch(xr, wr, br, **kw)
    g = torch.randn_like(yr)
    grads_r = torch.autograd.grad(yr, [t for t in (xr, wr, br) if t is not None], g)

    xb, wb = x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()
    bb = b.to(dtype).requires_grad_() if has_bias else None
    yb = fn_blfft(xb, wb, bb, compress_rate=0.0, **kw)
    assert yb.dtype == dtype and yb.shape == yr.shape
    grads_b = torch.autograd.grad(yb, [t for t in (xb, wb, bb) if t is not None], g.to(dtype))
    assert_close(yb, yr, dtype, "output")
    for name, gb, gr in zip(("grad_input", "grad_weight", "grad_bias"), grads_b, grads_r):
        assert gb.dtype == dtype
        assert_close(gb, gr, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES_2D)
def test_conv2d_matches_torch(case, dtype):
    _run(BF.conv2d, F.conv2d, 2, case, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES_1D)
def test_conv1d_matches_torch(case, dtype):
    _run(BF.conv1d, F.conv1d, 1, case, dtype)


@pytest.mark.parametrize("ndim", [1, 2])
def test_unbatched_input(ndim):
    spatial = (13,) if ndim == 1 else (9, 8)
    x = torch.randn(3, *spatial, dtype=torch.float64)
    w = torch.randn(4, 3, *((3,) * ndim), dtype=torch.float64)
    fb, ft = (BF.conv1d, F.conv1d) if ndim == 1 else (BF.conv2d, F.conv2d)
    y = fb(x, w, padding=1)
    assert_close(y, ft(x, w, padding=1), torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_inputs(dtype):
    """Strides pass through DLPack untouched: slices, transposes, channels_last, expand."""
    big = torch.randn(2, 6, 20, 15, dtype=dtype)
    x = big[:, 1:5, ::2, 2:].transpose(2, 3)  # (2, 4, 13, 10), non-contiguous
    assert not x.is_contiguous()
    wbig = torch.randn(3, 4, 3, 6, dtype=dtype)
    w = wbig[:, :, :, ::2]  # (3, 4, 3, 3)
    b = torch.randn(6, dtype=dtype)[::2]  # strided bias
    xr, wr, br = (t.detach().clone().double().requires_grad_() for t in (x, w, b))
    x, w, b = (t.requires_grad_() for t in (x.detach(), w.detach(), b.detach()))
    y = BF.conv2d(x, w, b, padding=1, stride=(1, 2))
    yr = F.conv2d(xr, wr, br, padding=1, stride=(1, 2))
    assert_close(y, yr, dtype, "output")
    # A non-contiguous, stride-0 gradient (from .sum()) and a channels_last one.
    y.sum().backward()
    yr.sum().backward()
    for t, tr, name in ((x, xr, "x"), (w, wr, "w"), (b, br, "b")):
        assert_close(t.grad, tr.grad, dtype, f"grad {name} (expanded grad_output)")
    xc = torch.randn(2, 4, 9, 9, dtype=dtype).to(memory_format=torch.channels_last)
    wc = torch.randn(5, 4, 3, 3, dtype=dtype).to(memory_format=torch.channels_last)
    assert_close(BF.conv2d(xc, wc), F.conv2d(xc.double(), wc.double()), dtype, "channels_last")


def test_no_grad_and_partial_grads():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        y = BF.conv2d(x, w)
    assert not y.requires_grad
    assert_close(y, F.conv2d(x, w), torch.float64)
    # Only the weight requires grad (a first layer); then only the input.
    y = BF.conv2d(x, w)
    (gw,) = torch.autograd.grad(y.square().sum(), [w])
    (gwr,) = torch.autograd.grad(F.conv2d(x, w).square().sum(), [w])
    assert_close(gw, gwr, torch.float64)
    xg = x.clone().requires_grad_()
    wd = w.detach()
    (gx,) = torch.autograd.grad(BF.conv2d(xg, wd).square().sum(), [xg])
    (gxr,) = torch.autograd.grad(F.conv2d(xg, wd).square().sum(), [xg])
    assert_close(gx, gxr, torch.float64)


def test_empty_batch():
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    y = BF.conv2d(x, w, padding=1)
    assert y.shape == F.conv2d(x, w, padding=1).shape
    y.sum().backward()
    assert w.grad is not None and torch.count_nonzero(w.grad) == 0


@pytest.mark.parametrize("ndim", [1, 2])
def test_pointwise_rate_zero_runs_without_transforms(ndim, monkeypatch):
    # 1x1 at rate 0 is the exact convolution: computed as torch's conv, never through the ops.
    from blfft import _ops

    def forbidden(*args, **kwargs):
        raise AssertionError("blfft::conv_forward called for a 1x1 kernel at rate 0")

    monkeypatch.setattr(_ops, "conv_forward", forbidden)
    conv, tconv = (BF.conv1d, F.conv1d) if ndim == 1 else (BF.conv2d, F.conv2d)
    shape = (3, 8) + (9,) * ndim
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn((6, 4) + (1,) * ndim, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = conv(x, w, b, stride=2, groups=2)
    ref = tconv(x, w, b, stride=2, groups=2)
    assert_close(y, ref, torch.float64, "y")
    gy = torch.randn_like(y)
    for a, r in zip(torch.autograd.grad(y, (x, w, b), gy), torch.autograd.grad(ref, (x, w, b), gy)):
        assert_close(a, r, torch.float64, "grad")
    # With compression, the band-limited path runs (and the forbidden op is hit).
    with pytest.raises(AssertionError, match="conv_forward called"):
        conv(x, w, b, stride=2, groups=2, compress_rate=0.5)
