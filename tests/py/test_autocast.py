"""torch.autocast: blfft's ops give the output dtype torch's convolutions give in the same region
(registered at torch.library's Autocast dispatch keys), and gradients in the parameters' dtype."""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import blfft
import blfft.functional as BF
from helpers import rel_l2


def _calls(device):
    x = torch.randn(2, 4, 10, 9, device=device)
    x1 = torch.randn(2, 4, 17, device=device)
    w = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    w1 = torch.randn(6, 4, 3, device=device, requires_grad=True)
    wt = torch.randn(4, 3, 2, 2, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    bt = torch.randn(3, device=device, requires_grad=True)
    return [
        ("conv2d", lambda m: m.conv2d(x, w, b, padding=1), {"compress_rate": 0.5}),
        ("conv1d", lambda m: m.conv1d(x1, w1, b, stride=2), {"compress_rate": 0.5}),
        ("conv2d 1x1", lambda m: m.conv2d(x, w[:, :, :1, :1]), {}),
        ("conv2d energy", lambda m: m.conv2d(x, w, padding=1), {"energy": 0.9}),
        ("conv_transpose2d", lambda m: m.conv_transpose2d(x, wt, bt, stride=2), {}),
        ("float64", lambda m: m.conv2d(x.double(), w.double(), padding=1), {}),
        ("conv2d empty batch", lambda m: m.conv2d(x[:0], w, b, padding=1), {"compress_rate": 0.5}),
        ("conv_transpose2d empty batch", lambda m: m.conv_transpose2d(x[:0], wt, bt, stride=2), {}),
    ], (w, w1, wt, b, bt)


def _check_region(device, dtype):
    calls, params = _calls(device)
    for name, call, kw in calls:
        with torch.autocast(device, dtype=dtype):
            ref = call(F)
            ours = call(_with(kw))
        assert ours.dtype == ref.dtype, f"{name}: {ours.dtype} != torch's {ref.dtype}"
        # Same numbers as the float32 computation on the rounded inputs, to the output rounding.
        if kw.get("compress_rate", 0.0) == 0.0 and "energy" not in kw:
            assert rel_l2(ours.float(), ref.float()) < 2e-2, name
        ours.float().square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)


class _with:
    """blfft.functional with fixed extra keywords."""

    def __init__(self, kw):
        self.kw = kw

    def __getattr__(self, name):
        fn = getattr(BF, name)
        return lambda *a, **k: fn(*a, **k, **self.kw)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast(dtype):
    _check_region("cpu", dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cpu_autocast_casts_the_other_half_dtype_too(dtype):
    """torch's autocast casts every floating tensor but float64 to the region's dtype: a float16
    activation in a bfloat16 region (or the reverse) meets a float32 weight as in F.conv2d."""
    other = torch.float16 if dtype == torch.bfloat16 else torch.bfloat16
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10, 9).to(other)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    wt = torch.randn(4, 3, 2, 2).to(other).requires_grad_()
    b = torch.randn(6, requires_grad=True)
    for name, call in [
        ("conv2d", lambda m: m.conv2d(x, w, b, padding=1)),
        ("conv2d other-dtype weight", lambda m: m.conv2d(x.float(), w.to(other), padding=1)),
        ("conv_transpose2d", lambda m: m.conv_transpose2d(x, wt, stride=2)),
    ]:
        with torch.autocast("cpu", dtype=dtype):
            ref = call(F)
            ours = call(BF)
        assert ours.dtype == ref.dtype == dtype, name
        assert rel_l2(ours.float(), ref.float()) < 2e-2, name
        ours.float().sum().backward()
    assert w.grad.dtype == torch.float32 and wt.grad.dtype == other


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_autocast(dtype):
    _check_region("cuda", dtype)


def test_cpu_autocast_model_trains_and_infers_from_cached_spectra():
    torch.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), tnn.ConvTranspose2d(8, 4, 2, stride=2)
    )
    blfft.convert(model, compress_rate=0.5, cache_weight_spectrum=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = model(x), model(x)
    assert a.dtype == b.dtype == torch.bfloat16
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model[0]._blfft_weight_cache.hits == 1
