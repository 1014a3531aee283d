"""3D convolutions: torch's conv3d at rate 0 (its own OpInfo samples and hand-picked cases), the
dense band-limited 3D reference at rate > 0 (reference.dense_conv3d: full rfftn, mask, irfftn),
adjoint gradients, gradcheck, the Conv3d module, conversion, and the refusals (energy mode)."""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import blfft
import blfft.functional as BF
from helpers import assert_close, check_against_opinfo_samples, rel_l2
from reference import band_limit_3d, dense_conv3d, fast_size

# torch itself warns that its 'same' padding with even kernels copies the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

DTYPES = [torch.float64, torch.float32]

# (N, C, F, (D, H, W), kernel, stride, padding, dilation, groups, bias)
CASES = [
    (2, 3, 4, (5, 6, 7), (3, 3, 3), 1, 1, 1, 1, True),
    (1, 2, 3, (7, 5, 6), (3, 2, 3), (2, 1, 2), (1, 0, 2), (1, 2, 1), 1, False),
    (2, 4, 6, (6, 6, 5), (2, 3, 2), (1, 2, 1), (2, 1, 0), (2, 1, 2), 2, True),
    (2, 4, 4, (4, 5, 5), (3, 3, 3), 2, 1, 1, 4, True),  # depthwise
    (1, 2, 2, (9, 4, 4), (3, 1, 1), (3, 1, 1), (3, 0, 0), (3, 1, 1), 1, True),  # temporal
    (2, 2, 3, (1, 5, 6), (1, 3, 3), 1, (0, 1, 1), 1, 1, True),  # depth 1
    (1, 3, 2, (6, 5, 7), (2, 3, 4), 1, "same", 1, 1, True),  # even kernels: asymmetric
    (2, 2, 2, (4, 4, 4), (1, 1, 1), 2, 0, 1, 1, True),  # 1x1x1 (runs as torch's conv)
]


def _tensors(case, dtype=torch.float64):
    n, c, f, size, k, stride, padding, dilation, groups, has_bias = case
    x = torch.randn(n, c, *size, dtype=dtype)
    w = torch.randn(f, c // groups, *k, dtype=dtype)
    b = torch.randn(f, dtype=dtype) if has_bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _grads(y, ins, g):
    return torch.autograd.grad(y, [t for t in ins if t is not None], g)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_opinfo_samples_at_rate_zero(dtype):
    check_against_opinfo_samples(BF.conv3d, F.conv3d, "nn.functional.conv3d", dtype, 5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_matches_torch_at_rate_zero(case, dtype):
    x, w, b, kw = _tensors(case)
    ins_r = [t.clone().requires_grad_() if t is not None else None for t in (x, w, b)]
    ins_b = [t.to(dtype).requires_grad_() if t is not None else None for t in (x, w, b)]
    yr = F.conv3d(*ins_r, **kw)
    y = BF.conv3d(*ins_b, **kw)
    assert y.dtype == dtype and y.shape == yr.shape
    assert_close(y, yr, dtype, "output")
    g = torch.randn_like(yr)
    names = ("grad_input", "grad_weight", "grad_bias")[: 3 if b is not None else 2]
    ours, theirs = _grads(y, ins_b, g.to(dtype)), _grads(yr, ins_r, g)
    for name, a, r in zip(names, ours, theirs, strict=True):
        assert_close(a, r, dtype, name)


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("case", [c for c in CASES if c[6] != "same" and max(c[4]) > 1])
def test_compressed_matches_dense_reference(case, rate):
    x, w, b, kw = _tensors(case)
    ins_r = [t.clone().requires_grad_() if t is not None else None for t in (x, w, b)]
    ins_b = [t.clone().requires_grad_() if t is not None else None for t in (x, w, b)]
    yr = dense_conv3d(*ins_r, **kw, rate=rate)
    y = BF.conv3d(*ins_b, **kw, compress_rate=rate)
    assert y.shape == yr.shape
    assert rel_l2(y, yr) < 1e-10
    g = torch.randn_like(yr)
    for a, r in zip(_grads(y, ins_b, g), _grads(yr, ins_r, g), strict=True):
        assert rel_l2(a, r) < 1e-10
    # The kept set is the contract's: blfft's geometry reports the same per-axis limits.
    y32 = BF.conv3d(
        x.float(), w.float(), None if b is None else b.float(), **kw, compress_rate=rate
    )
    assert rel_l2(y32, yr) < 1e-4


def test_kept_set_is_the_contract():
    from blfft._geometry import geometry

    for size, rate in [((16, 56, 56), 0.5), ((8, 9, 10), 0.75), ((5, 7, 6), 0.3)]:
        _, _, g = geometry((1, 1, *size), (1, 1, 3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, rate)
        grid = [fast_size(s + 2) for s in size]
        assert (g.depth_grid, *g.grid) == tuple(grid)
        limits = [band_limit_3d(L, rate) for L in grid]
        assert (g.depth_limit, *g.limits) == tuple(limits)
        kept = 2 * limits[0] - 1 if 2 * limits[0] - 1 < grid[0] else grid[0]
        assert len(g.kept_depth) == kept
        assert g.kept == len(g.kept_depth) * len(g.kept_rows) * len(g.kept_cols)
        assert g.total == grid[0] * grid[1] * (grid[2] // 2 + 1)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.75])
def test_gradients_are_adjoints(rate):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 1, 2), padding=(1, 1, 0), dilation=(1, 2, 1), groups=2)
    y = BF.conv3d(x, w, None, **kw, compress_rate=rate)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    lhs = (y * g).sum().item()
    assert abs((x * gx).sum().item() - lhs) <= 1e-10 * (abs(lhs) + 1)
    assert abs((w * gw).sum().item() - lhs) <= 1e-10 * (abs(lhs) + 1)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_gradcheck(rate):
    torch.manual_seed(4)
    x = torch.randn(1, 2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def fn(x, w, b):
        return BF.conv3d(x, w, b, stride=(1, 2, 1), padding=1, compress_rate=rate)

    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_unbatched_and_empty_batch():
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, 3, dtype=torch.float64)
    assert_close(BF.conv3d(x, w, padding=1), F.conv3d(x, w, padding=1), torch.float64)
    e = torch.randn(0, 3, 4, 5, 6, dtype=torch.float64)
    assert BF.conv3d(e, w, padding=1).shape == F.conv3d(e, w, padding=1).shape


def test_module_and_conversion():
    torch.manual_seed(5)
    ref = tnn.Sequential(tnn.Conv3d(3, 4, 3, padding=1), tnn.ReLU(), tnn.Conv3d(4, 2, (1, 3, 3)))
    x = torch.randn(2, 3, 4, 6, 6)
    y_ref = ref(x)
    model = blfft.convert(ref, compress_rate=0.0)
    assert isinstance(model[0], blfft.nn.Conv3d) and isinstance(model[0], tnn.Conv3d)
    assert_close(model(x), y_ref, torch.float32, "converted model")
    blfft.set_compression(model, 0.5)
    y = model(x)
    assert y.shape == y_ref.shape and rel_l2(y, y_ref) > 1e-3
    y.sum().backward()
    assert model[0].weight.grad is not None
    m = blfft.nn.Conv3d(3, 4, 3, padding=1, compress_rate=0.5, inference_compress_rate=0.2)
    m.eval()
    expect = BF.conv3d(x, m.weight, m.bias, padding=1, compress_rate=0.2)
    assert torch.equal(m(x), expect)
    report = blfft.compression_report(model)
    assert report is not None


def test_energy_mode_is_refused():
    x = torch.randn(1, 2, 4, 4, 4)
    w = torch.randn(2, 2, 3, 3, 3)
    with pytest.raises(NotImplementedError, match="3D"):
        BF.conv3d(x, w, energy=0.9)
    with pytest.raises(NotImplementedError, match="3D"):
        blfft.nn.Conv3d(2, 2, 3, energy=0.9)
    # convert(energy=...) converts 3D layers at compress_rate, as it does transposed ones.
    m = blfft.convert(tnn.Sequential(tnn.Conv3d(2, 2, 3)), energy=0.9)
    assert isinstance(m[0], blfft.nn.Conv3d) and m[0].energy is None


def test_bench_video_layer_plumbing():
    # The benchmark's 3D layer (blfft.bench.VIDEO), shrunk: inputs, both implementations and the
    # geometry the report reads.
    from dataclasses import replace

    from blfft import bench

    (video,) = bench.VIDEO
    assert video.ndim == 3 and video.spatial() == (16, 56, 56)
    small = replace(video, batch=1, cin=3, cout=2, size=7, depth=5)
    x, w = bench._inputs(small)
    assert x.shape == (1, 3, 5, 7, 7) and w.shape == (2, 3, 3, 3, 3)
    x, w = x.double(), w.double()
    ref = bench._torch(x, w, small, 0.0)
    torch.testing.assert_close(bench._blfft(x, w, small, 0.0), ref, rtol=1e-9, atol=1e-9)
    assert tuple(bench._geometry(small, 0.5).output_shape) == tuple(ref.shape)
