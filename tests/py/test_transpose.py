"""Transposed convolutions: torch's at rate 0 (its own OpInfo samples), the exact adjoint of the
band-limited convolution at rate > 0, gradients of any order, modules and conversion."""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import blfft
import blfft.functional as BF
from helpers import assert_close, check_against_opinfo_samples, rel_l2


def _fns(ndim):
    if ndim == 1:
        return BF.conv_transpose1d, F.conv_transpose1d, BF.conv1d
    return BF.conv_transpose2d, F.conv_transpose2d, BF.conv2d


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("ndim", [1, 2])
def test_torch_opinfo_samples_at_rate_zero(ndim, dtype):
    ours, theirs, _ = _fns(ndim)
    name = f"nn.functional.conv_transpose{ndim}d"
    check_against_opinfo_samples(ours, theirs, name, dtype, 10)


# (N, C_in, C_out, spatial, kernel, stride, padding, output_padding, dilation, groups)
CASES = [
    (2, 4, 3, (5, 6), (3, 3), 2, 1, 1, 1, 1),
    (1, 4, 6, (4, 5), (2, 2), 2, 0, 0, 1, 2),  # U-Net upsampling k2 s2, groups
    (2, 3, 2, (6, 5), (4, 4), 2, 1, 0, 1, 1),  # GAN-style k4 s2 p1
    (1, 2, 4, (5, 4), (3, 2), (3, 2), (1, 0), (2, 1), (1, 2), 2),
    (2, 2, 2, (4, 4), (3, 3), 1, 0, 1, 2, 1),  # output_padding >= stride (below the dilation)
]


def _case(ndim, case, dtype=torch.float64):
    n, cin, cout, spatial, kernel, stride, padding, out_pad, dilation, groups = case
    if ndim == 1:
        spatial, kernel = spatial[-1:], kernel[-1:]
        stride, padding, out_pad, dilation = (
            v[-1] if isinstance(v, tuple) else v for v in (stride, padding, out_pad, dilation)
        )
    x = torch.randn(n, cin, *spatial, dtype=dtype)
    w = torch.randn(cin, cout // groups, *kernel, dtype=dtype)
    b = torch.randn(cout, dtype=dtype)
    kw = dict(stride=stride, padding=padding, output_padding=out_pad, dilation=dilation)
    return x, w, b, kw, groups


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_matches_torch_at_rate_zero(ndim, case):
    x, w, b, kw, groups = _case(ndim, case)
    ours, theirs, _ = _fns(ndim)
    assert_close(ours(x, w, b, groups=groups, **kw), theirs(x, w, b, groups=groups, **kw), x.dtype)


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.75])
@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_exact_adjoint_of_the_band_limited_convolution(ndim, case, rate):
    """<conv(x, w), y> = <x, conv_transpose(y, w)> in float64, at the same rate."""
    y, w, _, kw, groups = _case(ndim, case)
    tconv, _, conv = _fns(ndim)
    out = tconv(y, w, groups=groups, compress_rate=rate, **kw)
    x = torch.randn_like(out)
    conv_kw = {k: v for k, v in kw.items() if k != "output_padding"}
    cx = conv(x, w, groups=groups, compress_rate=rate, **conv_kw)
    # With output_padding >= stride the convolution's output is longer than y: zero there.
    cx = cx[(...,) + tuple(slice(0, s) for s in y.shape[2:])]
    lhs, rhs = (cx * y).sum().item(), (x * out).sum().item()
    assert abs(lhs - rhs) <= 1e-12 * (cx.norm() * y.norm()).item(), (lhs, rhs)
    # And it is band-limited: not torch's transposed convolution.
    ref = _fns(ndim)[1](y, w, groups=groups, **kw)
    assert rel_l2(out, ref) > 1e-3


@pytest.mark.parametrize("rate", [0.0, 0.5])
@pytest.mark.parametrize("ndim", [1, 2])
def test_gradients_of_first_and_second_order(ndim, rate):
    x, w, b, kw, groups = _case(ndim, CASES[3])
    tconv = _fns(ndim)[0]
    inputs = tuple(t.requires_grad_() for t in (x, w, b))

    def fn(x, w, b):
        return tconv(x, w, b, groups=groups, compress_rate=rate, **kw)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_unbatched_and_empty_batch():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    y = BF.conv_transpose2d(x, w, stride=2, output_padding=1)
    assert_close(y, F.conv_transpose2d(x, w, stride=2, output_padding=1), torch.float64)
    e = BF.conv_transpose2d(x[None][:0], w, stride=2)
    assert e.shape == F.conv_transpose2d(x[None][:0], w, stride=2).shape
    e.sum().backward()
    assert w.grad is not None and not w.grad.any()


def test_argument_errors():
    x = torch.randn(1, 4, 5, 5)
    w = torch.randn(4, 2, 3, 3)
    with pytest.raises(ValueError, match="output_padding must be smaller than stride or dilation"):
        BF.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="input has 3 channels"):
        BF.conv_transpose2d(x[:, :3], w)
    with pytest.raises(ValueError, match="bias must have shape \\(2,\\)"):
        BF.conv_transpose2d(x, w, torch.randn(4))
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        BF.conv_transpose2d(x, w, groups=3)
    with pytest.raises(ValueError, match="not positive"):
        BF.conv_transpose2d(x, w, padding=4)
    with pytest.raises(ValueError, match="energy selection does not apply"):
        blfft.nn.ConvTranspose2d(4, 2, 3).energy = 0.9


@pytest.mark.parametrize("ndim", [1, 2])
def test_modules_match_torch_and_convert(ndim):
    cls = tnn.ConvTranspose1d if ndim == 1 else tnn.ConvTranspose2d
    ours_cls = blfft.nn.ConvTranspose1d if ndim == 1 else blfft.nn.ConvTranspose2d
    ref = cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2).double()
    m = ours_cls(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, compress_rate=0.0)
    m = m.double()
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, cls)
    x = torch.randn((2, 4) + (5,) * ndim, dtype=torch.float64)
    assert_close(m(x), ref(x), torch.float64, "module")
    size = [10] * ndim
    assert_close(m(x, output_size=size), ref(x, output_size=size), torch.float64, "output_size")
    net = tnn.Sequential(tnn.Identity(), ref)
    blfft.convert(net, compress_rate=0.5, inference_compress_rate=0.25, energy=0.9)
    assert isinstance(net[1], ours_cls) and net[1].weight is ref.weight
    assert net[1].compress_rate == 0.5 and net[1].energy is None
    rep = blfft.compression_report(net)
    net(x)
    rep = blfft.compression_report(net)
    assert len(rep) == 1 and rep[0]["achieved_rate"] > 0.4
    net.eval()
    with torch.no_grad():
        y_eval = net(x)
    assert blfft.compression_report(net)[0]["requested_rate"] == 0.25
    # Inference from a cached weight spectrum gives the same numbers.
    net[1].cache_weight_spectrum = True
    with torch.no_grad():
        torch.testing.assert_close(net(x), y_eval, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(net(x), y_eval, rtol=1e-12, atol=1e-12)
    assert net[1]._blfft_weight_cache.hits == 1
    assert blfft.set_compression(net, 0.1, energy=0.5) == 1 and net[1].energy is None


def test_set_compression_with_energy_only_leaves_transposed_layers_out():
    """energy= alone changes nothing on a transposed layer (rates only): it is not counted."""
    net = tnn.Sequential(tnn.Conv2d(2, 4, 3), tnn.ConvTranspose2d(4, 2, 2, stride=2))
    blfft.convert(net, compress_rate=0.3)
    assert blfft.set_compression(net, energy=0.9) == 1
    assert net[0].energy == 0.9 and net[1].energy is None and net[1].compress_rate == 0.3
    assert blfft.set_compression(net, 0.5, energy=0.9) == 2 and net[1].compress_rate == 0.5
    assert blfft.set_compression(net, mode="inference") == 2


@pytest.mark.parametrize(
    "case",
    [
        (4, 6, 2, (3, 3), 2, 1, 1, 1, (5, 6), 0.5),
        (3, 2, 1, (4, 4), 2, 1, 0, 1, (6, 5), 0.75),
        (2, 4, 2, (3, 2), (3, 2), (1, 0), (2, 1), (1, 2), (5, 4), 0.6),  # output_padding >= stride
    ],
    ids=str,
)
def test_matches_the_dense_reference_at_rate_above_zero(case):
    """Output and weight gradient against the dense reference's input and weight gradients of
    the band-limited convolution (tests/py/reference.py)."""
    from reference import dense_conv

    cin, cout, groups, k, s, p, op, d, size, rate = case
    torch.manual_seed(0)
    x = torch.randn(2, cin, *size, dtype=torch.float64)
    w = torch.randn(cin, cout // groups, *k, dtype=torch.float64, requires_grad=True)
    y = BF.conv_transpose2d(x, w, None, s, p, op, groups, d, compress_rate=rate)
    z = torch.zeros(y.shape, dtype=torch.float64, requires_grad=True)
    out = dense_conv(z, w.detach(), None, s, p, d, groups, rate=rate)
    padded = torch.zeros(out.shape, dtype=torch.float64)  # the convolution's output may be longer
    padded[..., : size[0], : size[1]] = x
    (ref,) = torch.autograd.grad(out, z, padded)
    assert_close(y, ref, torch.float64, "output")
    gy = torch.randn_like(y)
    (gw,) = torch.autograd.grad(y, w, gy)
    wr = w.detach().clone().requires_grad_()
    (gw_ref,) = torch.autograd.grad(
        dense_conv(gy, wr, None, s, p, d, groups, rate=rate), wr, padded
    )
    assert_close(gw, gw_ref, torch.float64, "weight gradient")
