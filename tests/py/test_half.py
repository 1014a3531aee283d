"""float16 and bfloat16: computed in float32 inside, output and gradients in the tensors' dtype;
at rate 0 no less accurate than torch's own half-precision convolution plus the final rounding."""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import blfft
import blfft.functional as BF
from helpers import rel_l2

HALF = [torch.bfloat16, torch.float16]


def _layer(ndim, transposed=False):
    if transposed:
        ours = BF.conv_transpose1d if ndim == 1 else BF.conv_transpose2d
        theirs = F.conv_transpose1d if ndim == 1 else F.conv_transpose2d
        return ours, theirs, dict(stride=2, padding=1, output_padding=1)
    ours, theirs = (BF.conv1d, F.conv1d) if ndim == 1 else (BF.conv2d, F.conv2d)
    return ours, theirs, dict(stride=1, padding=1, groups=2)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_rate_zero_error_within_torch_half_plus_rounding(dtype, ndim, transposed):
    ours, theirs, kw = _layer(ndim, transposed)
    spatial = (40,) if ndim == 1 else (16, 15)
    x = torch.randn(4, 8, *spatial).to(dtype)
    w = (torch.randn(8, 4, *((3,) * ndim)) / 6).to(dtype)
    b = torch.randn(w.shape[1] if transposed else 8).to(dtype)
    # The oracle: torch in float32 on the same rounded tensors (and float64 to check float32).
    ref = theirs(x.double(), w.double(), b.double(), **kw)
    y = ours(x, w, b, **kw)
    assert y.dtype == dtype
    err = rel_l2(y, ref)
    torch_err = rel_l2(theirs(x, w, b, **kw), ref)
    rounding = rel_l2(ref.to(dtype), ref)
    print(f"{dtype} ndim={ndim} transposed={transposed}: blfft {err:.3g}, torch {torch_err:.3g}")
    assert err <= torch_err + rounding, (
        f"{dtype}: blfft's error {err:.3g} > torch's {dtype} error {torch_err:.3g} + the final "
        f"rounding {rounding:.3g}"
    )


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gradients_in_the_parameters_dtype(dtype):
    x = torch.randn(2, 4, 12, 12).to(dtype).requires_grad_()
    w = torch.randn(6, 4, 3, 3).to(dtype).requires_grad_()
    b = torch.randn(6).to(dtype).requires_grad_()
    y = BF.conv2d(x, w, b, padding=1, compress_rate=0.5)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b), gy)
    assert [g.dtype for g in grads] == [dtype] * 3
    # The same numbers as float32 on the rounded tensors, rounded once.
    xf, wf, bf = (t.detach().float().requires_grad_() for t in (x, w, b))
    yf = BF.conv2d(xf, wf, bf, padding=1, compress_rate=0.5)
    ref = torch.autograd.grad(yf, (xf, wf, bf), gy.float())
    assert rel_l2(y, yf.to(dtype)) < 1e-2
    for g, r in zip(grads, ref, strict=True):
        assert rel_l2(g, r.to(dtype)) < 1e-2


def _saved(fn):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_kept_spectra_are_float32_unless_bfloat16_was_chosen(dtype):
    x = torch.randn(4, 8, 32, 32).to(dtype).clone().requires_grad_()
    w = torch.randn(8, 8, 3, 3).to(dtype).requires_grad_()
    try:
        blfft.set_input_spectrum_saving("keep")
        blfft.set_weight_spectrum_saving("keep")
        _, saved = _saved(lambda: BF.conv2d(x, w, padding=1, compress_rate=0.75))
        assert sorted(str(t.dtype) for t in saved if t.dim() == 1) == ["torch.float32"] * 2
        blfft.set_saved_spectrum_dtype(torch.bfloat16)
        y, saved = _saved(lambda: BF.conv2d(x, w, padding=1, compress_rate=0.75))
        assert sorted(str(t.dtype) for t in saved if t.dim() == 1) == ["torch.bfloat16"] * 2
        y.sum().backward()
        assert x.grad.dtype == w.grad.dtype == dtype
    finally:
        blfft.set_input_spectrum_saving("auto")
        blfft.set_weight_spectrum_saving("auto")
        blfft.set_saved_spectrum_dtype(None)


def test_model_bfloat16_trains_and_infers():
    torch.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1),
        tnn.ReLU(),
        tnn.Conv2d(8, 8, 1),
        tnn.ConvTranspose2d(8, 4, 2, stride=2),
    )
    blfft.convert(model, compress_rate=0.5, cache_weight_spectrum=True).bfloat16()
    x = torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)
    y = model(x)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 4, 16, 16)
    y.float().square().mean().backward()
    assert all(p.grad.dtype == torch.bfloat16 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)  # the second from the cached weight spectra
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model[0]._blfft_weight_cache.hits == 1
