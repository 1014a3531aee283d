"""The CUDA backend from Python: blfft._cuda and the dispatch of CUDA tensors to it.

Without a GPU (every build): blfft._cuda imports where it was built (static CUDA runtime; its
device_count() is 0 then), `import blfft` never depends on it, CUDA tensors raise the promised
error (not built / failed to load / no GPU usable), the binding's own checks (host tensors,
tensors on two devices, the stream argument) and build_info().

With a GPU (marked `cuda`; skipped, and reported as skipped, elsewhere; tools/gpu_check.sh runs
this file and counts a skip as a failure): forward and every gradient on CUDA against
torch.nn.functional and the CPU backend at rate 0 (the cases of test_exact.py), against the CPU
backend at rate 0.5 and in energy mode; non-contiguous inputs; a non-default current stream;
torch.compile (also mode="reduce-overhead"); a forward + backward captured in a CUDA graph and
replayed, and a clear refusal to make plans during capture; tensors on a device other than the
current one (with two GPUs); the modules on .cuda(); torch.library.opcheck; temporaries from
torch's caching allocator, nothing kept between calls (issue #10 item 3).
"""

import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F
from test_conv3d import CASES as CASES_3D
from test_dlpack import Producer
from test_exact import CASES_1D, CASES_2D

import blfft
import blfft.functional as BF
from blfft import _backends, _core, _ops
from helpers import REL_TOL, assert_close, case_tensors, conv_backward_args, rel_l2
from helpers import Net as _Net
from helpers import train_step as _step
from reference import dense_conv3d

BUILT = _backends.cuda_module is not None
needs_module = pytest.mark.skipif(not BUILT, reason="blfft._cuda not built in this build")

# torch itself warns that its 'same' padding with even kernels copies the input (test_exact's
# cases).
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

# torch's own compile stack uses APIs it has deprecated, and inductor advises TF32 for the float32
# matmul of the small model's Linear layer; those warnings are not ours.
COMPILE_WARNINGS = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning"),
]


def _fake_cuda(*shape):
    """A tensor whose device is cuda:0 on any machine (a FakeTensor, no storage), for the checks
    that refuse CUDA tensors before touching their data."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        return torch.empty(*shape, device="cuda")


# ================================================================================================
# Without a GPU
# ================================================================================================


def test_build_info_cuda_fields_are_consistent():
    info = blfft.build_info()
    assert info["cuda_built"] is BUILT
    assert info["gpu_available"] == torch.cuda.is_available()
    assert isinstance(info["cuda_device_count"], int) and info["cuda_device_count"] >= 0
    assert info["cuda_usable"] == (
        BUILT and info["gpu_available"] and info["cuda_device_count"] > 0
    )
    if BUILT:
        archs = info["cuda_architectures"]
        assert archs and all(a.rstrip("a").isdigit() for a in archs), archs
        assert archs == list(_backends.cuda_module.cuda_architectures)
        assert info["cuda_import_error"] is None
        assert info["cuda_device_count"] == _backends.cuda_module.device_count()
    else:
        assert info["cuda_architectures"] == [] and info["cuda_device_count"] == 0
    if not torch.cuda.is_available():
        assert info["cuda_usable"] is False


@needs_module
def test_cuda_module_imports_without_a_gpu():
    from blfft import _cuda

    assert _cuda.compiled() is True
    n = _cuda.device_count()
    assert isinstance(n, int) and n >= 0
    if not torch.cuda.is_available():
        assert n == 0
    assert _cuda.BlfftError is blfft.BlfftError
    assert _cuda.__version__ == blfft.__version__
    assert tuple(_cuda.dlpack_version) == tuple(_core.dlpack_version)
    assert _cuda.plan_cache_size() >= 0


@needs_module
def test_torch_allocator_is_registered_on_import():
    """blfft._backends registers torch's caching allocator with blfft._cuda on import, so that a
    call's temporaries are torch's (checked on a GPU below); set_allocator checks its arguments."""
    from blfft import _cuda

    assert _cuda.allocator_registered() is True
    with pytest.raises(TypeError, match="both alloc and free, or neither"):
        _cuda.set_allocator(torch.cuda.caching_allocator_alloc, None)
    with pytest.raises(TypeError, match="must be callables"):
        _cuda.set_allocator(1, 2)
    assert _cuda.allocator_registered() is True  # a refused call changes nothing
    try:
        _cuda.set_allocator(None, None)
        assert _cuda.allocator_registered() is False
    finally:
        assert _backends.use_torch_allocator() is True
    assert _cuda.allocator_registered() is True
    # No device: BlfftError ("unsupported"); with one, device 99 is out of range: ValueError.
    with pytest.raises((blfft.BlfftError, ValueError), match="no CUDA device|out of range"):
        _cuda.memory_stats(99)


def _expect_unsupported(match, fn):
    with pytest.raises(blfft.BlfftError, match=match) as e:
        fn()
    assert e.value.code == "unsupported"
    assert isinstance(e.value, RuntimeError)
    return e.value


@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_outputs_follow_the_input_layout(ndim):
    """A channels_last (2D) or channels_last_3d (3D) CUDA input gives an output and input
    gradient in that layout (the CUDA kernels write them in place), as torch's convolutions do;
    contiguous stays contiguous. Fake CUDA tensors: the layouts the ops' fake kernels report
    (what torch.compile sees), on any machine; test_cuda_channels_last_is_not_copied checks the
    real ones on a GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    last = torch.channels_last if ndim == 2 else torch.channels_last_3d
    sp = (9,) * ndim
    conf = ([1] * ndim, [1] * ndim, [1] * ndim, 1, 0.5, [])
    with FakeTensorMode():
        for cl in (False, True):
            fmt = last if cl else torch.contiguous_format
            x = torch.empty(2, 4, *sp, device="cuda").to(memory_format=fmt)
            w = torch.empty(5, 4, *(3,) * ndim, device="cuda")
            y = torch.ops.blfft.conv_forward(x, w, None, *conf, True, False)[0]
            assert y.shape == (2, 5, *sp)
            assert y.is_contiguous(memory_format=fmt), f"forward output, channels_last={cl}"
            g = torch.empty(2, 5, *sp, device="cuda").to(memory_format=fmt)
            gx, gw, _ = torch.ops.blfft.conv_backward(
                g, x, None, w, None, x.shape, w.shape, *conf, True, True, False
            )
            assert gx.is_contiguous(memory_format=fmt), f"input gradient, channels_last={cl}"
            assert gw.is_contiguous()
    # CPU tensors keep contiguous outputs (the CPU backend's choice).
    xc = torch.empty(2, 4, *sp).to(memory_format=last)
    assert _ops._layout(xc) is torch.contiguous_format


def test_cuda_tensors_without_the_module_say_not_built(monkeypatch):
    monkeypatch.setattr(_backends, "cuda_module", None)
    monkeypatch.setattr(_backends, "cuda_import_error", None)
    x, w = _fake_cuda(2, 3, 8, 8), _fake_cuda(4, 3, 3, 3)
    err = _expect_unsupported("CUDA backend not built", lambda: BF.conv2d(x, w))
    assert "input is on cuda:0" in str(err)
    _expect_unsupported("CUDA backend not built", lambda: _backends.backend_for(w, "weight"))
    info = blfft.build_info()
    assert info["cuda_built"] is False and info["cuda_usable"] is False


def test_cuda_tensors_when_the_module_failed_to_load(monkeypatch):
    monkeypatch.setattr(_backends, "cuda_module", None)
    monkeypatch.setattr(
        _backends,
        "cuda_import_error",
        "ImportError: libcufft.so.12: cannot open shared object file",
    )
    x, w = _fake_cuda(2, 3, 8, 8), _fake_cuda(4, 3, 3, 3)
    _expect_unsupported("blfft._cuda failed to load .*libcufft.so.12", lambda: BF.conv2d(x, w))
    assert "libcufft" in blfft.build_info()["cuda_import_error"]


def test_cuda_tensors_without_a_usable_gpu_say_so(monkeypatch):
    if not BUILT or torch.cuda.is_available():
        # Stand in for a built module on a machine without a GPU.
        monkeypatch.setattr(
            _backends,
            "cuda_module",
            types.SimpleNamespace(device_count=lambda: 0, cuda_architectures=["90"]),
        )
        monkeypatch.setattr(_backends, "_cuda_devices", None)
    x, w = _fake_cuda(2, 3, 8, 8), _fake_cuda(4, 3, 3, 3)
    _expect_unsupported("no GPU usable", lambda: BF.conv2d(x, w))
    x1, w1 = _fake_cuda(2, 3, 9), _fake_cuda(4, 3, 3)
    _expect_unsupported("no GPU usable", lambda: BF.conv1d(x1, w1))
    # 3D goes the same way (to the CUDA backend, no "CPU backend only" refusal).
    x3, w3 = _fake_cuda(2, 3, 4, 8, 8), _fake_cuda(4, 3, 3, 3, 3)
    _expect_unsupported("no GPU usable", lambda: BF.conv3d(x3, w3, compress_rate=0.5))
    ones, zeros = (1, 1), (0, 0)
    _expect_unsupported(
        "no GPU usable", lambda: _ops.select_band(x, w.shape, ones, zeros, ones, 1, 0.9)
    )
    assert blfft.build_info()["cuda_usable"] is False


def test_other_devices_are_refused():
    x = torch.empty(2, 3, 8, 8, device="meta")
    _expect_unsupported(
        "runs on the CPU and on CUDA devices", lambda: _backends.backend_for(x, "input")
    )


def _import_blfft_with(finder_body: str) -> str:
    """Runs `import blfft` in a fresh interpreter where importing blfft._cuda does what
    finder_body says; returns its output."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "blfft._cuda":
        {body}
                return None

        sys.meta_path.insert(0, Finder())
        import torch
        import blfft, blfft.functional as BF
        from blfft import _ops
        info = blfft.build_info()
        x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
        assert torch.allclose(BF.conv2d(x, w), torch.nn.functional.conv2d(x, w), atol=1e-4)
        print("cuda_built", info["cuda_built"])
        print("import_error", info["cuda_import_error"])
        print("reason", _ops.cuda_unusable_reason())
        """
    ).replace("{body}", textwrap.indent(textwrap.dedent(finder_body), " " * 16))
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_import_blfft_works_when_cuda_module_is_missing():
    out = _import_blfft_with(
        'raise ModuleNotFoundError("No module named \'blfft._cuda\'", name="blfft._cuda")'
    )
    assert "cuda_built False" in out and "import_error None" in out
    assert "CUDA backend not built" in out


def test_import_blfft_works_when_cuda_module_fails_to_load():
    out = _import_blfft_with('raise ImportError("libcufft.so.12: cannot open shared object")')
    assert "cuda_built False" in out
    assert "import_error ImportError: libcufft.so.12" in out
    assert "failed to load" in out


# --- the binding's own checks (no GPU needed: they refuse before any device work) ---------------


def _conv_args(dtype=torch.float64):
    x = torch.randn(2, 3, 8, 9, dtype=dtype)
    w = torch.randn(4, 3, 3, 3, dtype=dtype)
    p = _core.ConvParams.conv2d(2, 3, 4, (8, 9), (3, 3), padding=(1, 1))
    return x, w, p


@needs_module
def test_binding_refuses_host_tensors_naming_the_argument():
    from blfft import _cuda

    x, w, p = _conv_args()
    y = torch.empty(2, 4, 8, 9, dtype=torch.float64)
    none = _core.Compression.none()
    # torch tensors (by __dlpack__, checked with __dlpack_device__ first) and capsules.
    with pytest.raises(TypeError, match="input is on cpu: blfft._cuda takes CUDA tensors"):
        _cuda.forward(p, none, x, w, None, y, None, None, 0)
    dl = torch.utils.dlpack.to_dlpack
    with pytest.raises(TypeError, match="input is on cpu"):
        _cuda.forward(p, none, dl(x), dl(w), None, dl(y), None, None, 0)
    # The first argument on a CUDA device, a later one on the host: that one is named.
    px = Producer(x, list(x.shape), device=(2, 0))
    with pytest.raises(TypeError, match="weight is on cpu"):
        _cuda.forward(p, none, px, w, None, y, None, None, 0)
    assert px.deleted == 1  # released even on error
    with pytest.raises(TypeError, match="x_spectrum is on cpu"):
        _cuda.input_spectrum(p, none, Producer(x, list(x.shape), device=(2, 0)), torch.empty(9), 0)
    pinned = Producer(x, list(x.shape), device=(3, 0))  # kDLCUDAHost: not device memory
    with pytest.raises(TypeError, match="input is on cuda_host"):
        _cuda.select_by_energy(p, pinned, 0.9, 0)


@needs_module
def test_binding_refuses_tensors_on_two_devices():
    from blfft import _cuda

    x, w, p = _conv_args()
    y = torch.empty(2, 4, 8, 9, dtype=torch.float64)
    with pytest.raises(TypeError, match="weight is on cuda:1 but input is on cuda:0"):
        _cuda.forward(
            p,
            _core.Compression.none(),
            Producer(x, list(x.shape), device=(2, 0)),
            Producer(w, list(w.shape), device=(2, 1)),
            None,
            Producer(y, list(y.shape), device=(2, 0)),
            None,
            None,
            0,
        )
    info = _cuda.dlpack_info(Producer(x, list(x.shape), device=(2, 3)))
    assert info["device"] == "cuda:3" and info["device_id"] == 3


@needs_module
def test_binding_needs_the_stream_and_a_device():
    from blfft import _cuda

    x, w, p = _conv_args()
    y = torch.empty(2, 4, 8, 9, dtype=torch.float64)
    none = _core.Compression.none()

    def on(t, dev=0):
        return Producer(t, list(t.shape), device=(2, dev))

    with pytest.raises(TypeError):  # no stream: the caller must name it
        _cuda.forward(p, none, on(x), on(w), None, on(y), None, None)
    if _cuda.device_count() == 0:
        # All on one "CUDA device" (host memory labelled kDLCUDA: never dereferenced).
        _expect_unsupported(
            "no CUDA device",
            lambda: _cuda.forward(p, none, on(x), on(w), None, on(y), None, None, 0),
        )
        _expect_unsupported("no CUDA device", lambda: _cuda.select_by_energy(p, on(x), 0.9, 0))
    else:
        # A GPU: the plan's pointer check finds host memory behind the kDLCUDA label.
        with pytest.raises(TypeError, match="needs device memory"):
            _cuda.forward(p, none, on(x), on(w), None, on(y), None, None, 0)


# ================================================================================================
# With a GPU
# ================================================================================================

DEV = "cuda"


def _grads(fn, x, w, b, g, **kw):
    """(y, [grad_x, grad_w, grad_b]) of fn(x, w, b, **kw) for upstream gradient g."""
    xs = x.detach().clone().requires_grad_()
    ws = w.detach().clone().requires_grad_()
    bs = None if b is None else b.detach().clone().requires_grad_()
    y = fn(xs, ws, bs, **kw)
    grads = torch.autograd.grad(y, [t for t in (xs, ws, bs) if t is not None], g)
    return y.detach(), list(grads)


def _compare_cuda(ndim, case, dtype, rate=0.0, energy=None, against_torch=True):
    x, w, b, kw = case_tensors(ndim, case)
    fb, ft = ((BF.conv1d, F.conv1d), (BF.conv2d, F.conv2d), (BF.conv3d, F.conv3d))[ndim - 1]
    bkw = dict(kw, compress_rate=rate, energy=energy)

    y_cpu, g_cpu = None, None
    y_ref = ft(x, w, b, **kw)
    g = torch.randn_like(y_ref)
    y_cpu, g_cpu = _grads(
        fb, x.to(dtype), w.to(dtype), None if b is None else b.to(dtype), g.to(dtype), **bkw
    )
    on = lambda t: None if t is None else t.to(DEV, dtype)  # noqa: E731
    y_gpu, g_gpu = _grads(fb, on(x), on(w), on(b), on(g), **bkw)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == dtype
    assert all(t.device.type == "cuda" and t.dtype == dtype for t in g_gpu)
    names = ("grad_input", "grad_weight", "grad_bias")
    # Against the CPU backend, same dtype (a float32 pair may differ by both rounding errors).
    assert_close(y_gpu.cpu(), y_cpu, dtype, "output vs CPU backend")
    for name, a, r in zip(names, g_gpu, g_cpu, strict=False):  # no grad_bias without bias
        assert_close(a.cpu(), r, dtype, f"{name} vs CPU backend")
    if against_torch:
        _, g_ref = _grads(ft, x, w, b, g, **kw)
        assert_close(y_gpu.cpu(), y_ref, dtype, "output vs torch")
        for name, a, r in zip(names, g_gpu, g_ref, strict=False):
            assert_close(a.cpu(), r, dtype, f"{name} vs torch")


DTYPES = [torch.float64, torch.float32]


RATE0_CASES = [(1, c) for c in CASES_1D] + [(2, c) for c in CASES_2D] + [(3, c) for c in CASES_3D]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ndim,case", RATE0_CASES)
def test_cuda_rate0_matches_torch_and_cpu(ndim, case, dtype):
    _compare_cuda(ndim, case, dtype)


COMPRESSED_CASES = (
    [(1, c, 0.5) for c in CASES_1D[:3]]
    + [(2, c, 0.5) for c in CASES_2D[:4] + CASES_2D[-1:]]
    + [(3, c, r) for c in CASES_3D[:4] for r in (0.5, 0.75)]
)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ndim,case,rate", COMPRESSED_CASES)
def test_cuda_compressed_matches_cpu(ndim, case, rate, dtype):
    _compare_cuda(ndim, case, dtype, rate=rate, against_torch=False)


@pytest.mark.cuda
def test_cuda_conv3d_module_and_dense_reference():
    """blfft.nn.Conv3d on the GPU against the dense band-limited 3D reference (rfftn, mask,
    irfftn) and against the same module on the CPU."""
    torch.manual_seed(3)
    m = blfft.nn.Conv3d(3, 4, 3, stride=(1, 2, 1), padding=1, compress_rate=0.5).double()
    x = torch.randn(2, 3, 6, 9, 8, dtype=torch.float64)
    y_ref = dense_conv3d(x, m.weight, m.bias, stride=(1, 2, 1), padding=1, rate=0.5)
    y_cpu = m(x)
    y_gpu = m.to(DEV)(x.to(DEV))
    assert_close(y_gpu.cpu(), y_ref.detach(), torch.float64, "Conv3d on CUDA vs dense reference")
    assert_close(y_gpu.cpu(), y_cpu.detach(), torch.float64, "Conv3d on CUDA vs CPU")


@pytest.mark.cuda
@pytest.mark.parametrize("ndim", [1, 2])
def test_cuda_energy_selection_matches_cpu(ndim):
    spatial = (40,) if ndim == 1 else (20, 18)
    # Smooth data (cumulative sums): most energy at low frequencies, a real choice to make.
    x = torch.randn(3, 4, *spatial, dtype=torch.float64).cumsum(-1)
    w_shape = (5, 4) + (3,) * ndim
    ones = (1,) * ndim
    for energy in (0.5, 0.9, 0.99):
        band_cpu, sel_cpu = _ops.select_band(x, w_shape, ones, ones, ones, 1, energy)
        band_gpu, sel_gpu = _ops.select_band(x.to(DEV), w_shape, ones, ones, ones, 1, energy)
        assert band_gpu == band_cpu, (energy, band_gpu, band_cpu)
        assert abs(sel_gpu.energy_kept - sel_cpu.energy_kept) < 1e-9
        assert sel_gpu.energy_kept >= energy
    case = (
        3,
        4,
        5,
        spatial if ndim == 2 else spatial[0],
        w_shape[2:] if ndim == 2 else 3,
        1,
        1,
        1,
        1,
        True,
    )
    _compare_cuda(ndim, case, torch.float64, energy=0.9, against_torch=False)
    _compare_cuda(ndim, case, torch.float32, energy=0.9, against_torch=False)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_non_contiguous_inputs(dtype):
    """Slices, transposes, strided bias, an expanded (stride-0) grad_output, channels_last."""
    big = torch.randn(2, 6, 20, 15, dtype=dtype, device=DEV)
    x = big[:, 1:5, ::2, 2:].transpose(2, 3)  # (2, 4, 13, 10), non-contiguous
    w = torch.randn(3, 4, 3, 6, dtype=dtype, device=DEV)[:, :, :, ::2]
    b = torch.randn(6, dtype=dtype, device=DEV)[::2]
    assert not x.is_contiguous() and not w.is_contiguous()
    ref = [t.detach().cpu().double().requires_grad_() for t in (x, w, b)]
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    for rate in (0.0, 0.5):
        for t in (x, w, b) + tuple(ref):
            t.grad = None
        y = BF.conv2d(x, w, b, padding=1, stride=(1, 2), compress_rate=rate)
        y.sum().backward()  # grad_output: ones expanded, stride 0
        if rate == 0.0:
            yr = F.conv2d(*ref, padding=1, stride=(1, 2))
        else:  # the CPU backend on the same (contiguous) values
            yr = BF.conv2d(*ref, padding=1, stride=(1, 2), compress_rate=rate)
        yr.sum().backward()
        assert_close(y.cpu(), yr, dtype, f"output, rate {rate}")
        for t, tr, name in zip((x, w, b), ref, "xwb", strict=True):
            assert_close(t.grad.cpu(), tr.grad, dtype, f"grad {name}, rate {rate}")
    xc = torch.randn(2, 4, 9, 9, dtype=dtype, device=DEV).to(memory_format=torch.channels_last)
    wc = torch.randn(5, 4, 3, 3, dtype=dtype, device=DEV).to(memory_format=torch.channels_last)
    assert_close(
        BF.conv2d(xc, wc).cpu(),
        F.conv2d(xc.cpu().double(), wc.cpu().double()),
        dtype,
        "channels_last",
    )


@pytest.mark.cuda
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_channels_last_is_not_copied(dtype, ndim):
    """channels_last (channels_last_3d) x and grad_output go to the kernels as they are; y and
    grad_input come back in that layout with the contiguous call's values."""
    sp = (11, 10) if ndim == 2 else (5, 7, 6)
    conv = BF.conv2d if ndim == 2 else BF.conv3d
    last = torch.channels_last if ndim == 2 else torch.channels_last_3d
    x = torch.randn(3, 6, *sp, dtype=dtype, device=DEV)
    w = torch.randn(5, 6, *(3,) * ndim, dtype=dtype, device=DEV)
    b = torch.randn(5, dtype=dtype, device=DEV)
    g = torch.randn(3, 5, *sp, dtype=dtype, device=DEV)
    res = []
    for fmt in (torch.contiguous_format, last):
        xs = x.to(memory_format=fmt).requires_grad_()
        ws = w.clone().requires_grad_()
        y = conv(xs, ws, b, padding=1, compress_rate=0.5)
        y.backward(g.to(memory_format=fmt))
        assert y.is_contiguous(memory_format=fmt) and xs.grad.is_contiguous(memory_format=fmt)
        res.append((y.detach(), xs.grad, ws.grad))
    for a, c, name in zip(res[0], res[1], ("y", "grad_input", "grad_weight"), strict=True):
        assert_close(c.cpu(), a.cpu(), dtype, f"channels_last {name}")


@pytest.mark.cuda
def test_cuda_runs_on_the_current_stream():
    """Work is enqueued on torch's current stream: under a non-default stream whose earlier work
    (a long sleep, then the copy that makes the input) is still running, the result is right,
    forward and backward. A backend that used the default stream would read the input early."""
    s = torch.cuda.Stream()
    base = torch.randn(4, 8, 32, 32, device=DEV)
    w = torch.randn(8, 8, 3, 3, device=DEV, requires_grad=True)
    torch.cuda.synchronize()
    y_ref, g_ref = _grads(
        BF.conv2d,
        base.cpu(),
        w.detach().cpu(),
        None,
        torch.ones(4, 8, 32, 32),
        padding=1,
        compress_rate=0.25,
    )
    for _ in range(3):
        with torch.cuda.stream(s):
            assert torch.cuda.current_stream().cuda_stream == s.cuda_stream != 0
            torch.cuda._sleep(50_000_000)  # tens of milliseconds of GPU time on s
            x = (base * 1.0).requires_grad_()  # ready only after the sleep
            y = BF.conv2d(x, w, padding=1, compress_rate=0.25)
            gx, gw = torch.autograd.grad(y, [x, w], torch.ones_like(y))
        s.synchronize()
        assert_close(y.cpu(), y_ref, torch.float32, "output on a side stream")
        assert_close(gx.cpu(), g_ref[0], torch.float32, "grad_input on a side stream")
        assert_close(gw.cpu(), g_ref[1], torch.float32, "grad_weight on a side stream")
    # And on the default stream, for good measure.
    y0 = BF.conv2d(base, w.detach(), padding=1, compress_rate=0.25)
    assert_close(y0.cpu(), y_ref, torch.float32, "output on the default stream")


@pytest.mark.cuda
def test_cuda_mixed_devices_are_refused():
    x = torch.randn(2, 3, 8, 8, device=DEV)
    w = torch.randn(4, 3, 3, 3)
    with pytest.raises(TypeError, match="weight is on cpu but input is on cuda:0"):
        BF.conv2d(x, w)
    with pytest.raises(TypeError, match="weight is on cpu but input is on cuda:0"):
        torch.ops.blfft.conv_forward(x, w, None, [1, 1], [0, 0], [1, 1], 1, 0.0, [], False, False)


@pytest.mark.cuda
@COMPILE_WARNINGS[0]
@COMPILE_WARNINGS[1]
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_cuda_torch_compile(backend, monkeypatch):
    torch._dynamo.reset()
    # Compiled first, with the device count not looked up yet: nothing in the traced code may
    # call into the binding (fullgraph).
    monkeypatch.setattr(_backends, "_cuda_devices", None)
    model = _Net().to(DEV)
    x = torch.randn(4, 3, 12, 12, device=DEV)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    out_c, grads_c = _step(compiled, model, x)
    out_e, grads_e = _step(model, model, x)
    torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
    for n in grads_e:
        torch.testing.assert_close(grads_c[n], grads_e[n], rtol=1e-4, atol=1e-5)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_cuda_graph_capture_replays_forward_backward():
    """Issue #10 item 4: a forward + backward captured with torch.cuda.graph (after warm-up runs,
    which make blfft's plans outside capture) and replayed on new inputs gives what eager gives."""
    torch.manual_seed(3)
    model = _Net().to(DEV)
    static_x = torch.randn(4, 3, 12, 12, device=DEV)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch's documentation advises
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            model(static_x).square().sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    model.zero_grad(set_to_none=True)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = model(static_x)
        static_out.square().sum().backward()
    for seed in (5, 6):
        x = torch.randn(4, 3, 12, 12, device=DEV, generator=torch.Generator(DEV).manual_seed(seed))
        static_x.copy_(x)
        g.replay()
        torch.cuda.synchronize()
        got_out = static_out.detach().clone()
        got = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        want_out, want = _step(model, model, x)
        torch.testing.assert_close(got_out, want_out, rtol=1e-4, atol=1e-5)
        for n in want:
            torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.cuda
@COMPILE_WARNINGS[0]
@COMPILE_WARNINGS[1]
def test_cuda_torch_compile_reduce_overhead():
    """torch.compile(mode="reduce-overhead") (CUDA graphs through inductor) on new inputs."""
    torch._dynamo.reset()
    torch.manual_seed(4)
    model = _Net().to(DEV)
    compiled = torch.compile(model, mode="reduce-overhead")
    for seed in range(4):
        x = torch.randn(4, 3, 12, 12, device=DEV, generator=torch.Generator(DEV).manual_seed(seed))
        torch.compiler.cudagraph_mark_step_begin()
        out_c, grads_c = _step(compiled, model, x)
        out_e, grads_e = _step(model, model, x)
        torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
        for n in grads_e:
            torch.testing.assert_close(grads_c[n], grads_e[n], rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_tensors_on_a_device_other_than_the_current_one():
    """Issue #10 item 6: tensors on cuda:1 while cuda:0 is current compute on cuda:1, on its
    stream, and leave cuda:0 current."""
    x = torch.randn(2, 3, 9, 9, device="cuda:1")
    w = torch.randn(4, 3, 3, 3, device="cuda:1")
    torch.cuda.set_device(0)
    y = BF.conv2d(x, w, padding=1)
    assert y.device == x.device and torch.cuda.current_device() == 0
    ref = F.conv2d(x.double().cpu(), w.double().cpu(), padding=1)
    assert rel_l2(y.double().cpu(), ref) < REL_TOL[torch.float32]


@pytest.mark.cuda
def test_cuda_modules_match_cpu():
    """blfft.nn modules moved with .cuda(): a training step and cached-spectrum inference give
    what the same modules give on the CPU."""
    torch.manual_seed(0)
    cpu = _Net().double()
    gpu = _Net().double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    assert all(p.is_cuda for p in gpu.parameters())
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64)
    out_c, grads_c = _step(cpu, cpu, x)
    out_g, grads_g = _step(gpu, gpu, x.cuda())
    assert_close(out_g.cpu(), out_c, torch.float64, "train output")
    for n in grads_c:
        assert_close(grads_g[n].cpu(), grads_c[n], torch.float64, f"grad {n}")
    for m in (cpu, gpu):
        m.eval()
        for layer in (m.c1, m.c2, m.c3):
            layer.cache_weight_spectrum = True
    with torch.no_grad():
        ref = cpu(x)
        for _ in range(2):  # the second call reuses the cached weight spectra
            assert_close(gpu(x.cuda()).cpu(), ref, torch.float64, "eval output")
    assert gpu.c1._blfft_weight_cache.hits >= 1
    assert gpu.c1._blfft_weight_cache.nbytes > 0
    # Module conversion of a torch model, then the GPU.
    tm = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1), tnn.ReLU(), tnn.Conv2d(4, 2, 3)).double()
    bm = blfft.convert(tm, compress_rate=0.0).cuda()
    assert_close(bm(x.cuda()).cpu(), tm(x), torch.float64, "converted model")


@pytest.mark.cuda
def test_cuda_ops_pass_opcheck():
    x = torch.randn(2, 3, 8, 7, dtype=torch.float64, device=DEV, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=DEV, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device=DEV, requires_grad=True)
    torch.library.opcheck(
        torch.ops.blfft.conv_forward.default,
        (x, w, b, [1, 1], [1, 1], [1, 1], 1, 0.5, [], True, True),
    )
    g = torch.randn(2, 4, 8, 7, dtype=torch.float64, device=DEV)
    bargs = conv_backward_args(g, x, w)
    torch.library.opcheck(torch.ops.blfft.conv_backward.default, bargs)


@pytest.mark.cuda
def test_cuda_binding_direct_call_and_pool():
    """The binding on torch CUDA tensors directly (by __dlpack__ with the consumer's stream), and
    the pool statistics."""
    from blfft import _cuda

    x, w, p = _conv_args(torch.float32)
    xc, wc = x.to(DEV), w.to(DEV)
    y = torch.empty(2, 4, 8, 9, device=DEV)
    _cuda.forward(
        p,
        _core.Compression.none(),
        xc,
        wc,
        None,
        y,
        None,
        None,
        torch.cuda.current_stream().cuda_stream,
    )
    torch.cuda.synchronize()
    assert rel_l2(y.cpu(), F.conv2d(x, w, padding=1)) < REL_TOL[torch.float32]
    st = _cuda.memory_stats(torch.cuda.current_device())
    assert set(st) == {"in_use", "peak", "allocations"}
    assert st["in_use"] == 0 and st["peak"] > 0 and st["allocations"] > 0
    assert _cuda.plan_cache_size() >= 1


# --- memory: torch's caching allocator, nothing kept between calls (issue #10 item 3) -----------


def _direct_forward(x, w, p, comp, y):
    """blfft._cuda.forward with no spectra given: the call makes both as temporaries."""
    from blfft import _cuda

    _cuda.forward(p, comp, x, w, None, y, None, None, torch.cuda.current_stream().cuda_stream)


@pytest.mark.cuda
def test_cuda_temporaries_come_from_torch_and_go_back():
    """A call's temporaries are allocated by torch's caching allocator (max_memory_allocated rises
    during the call by at least what blfft asked for) and all given back by its end
    (memory_allocated is back to the baseline); with the allocator unregistered they come from
    cudaMallocAsync instead, which torch does not see."""
    from blfft import _cuda

    dev = torch.cuda.current_device()
    p = _core.ConvParams.conv2d(8, 32, 32, (24, 24), (3, 3), padding=(1, 1))
    comp = _core.Compression.rate(0.5)
    x = torch.randn(8, 32, 24, 24, device=DEV)
    w = torch.randn(32, 32, 3, 3, device=DEV)
    y = torch.empty(8, 32, 24, 24, device=DEV)
    _direct_forward(x, w, p, comp, y)  # plans made (their tables are not temporaries)
    want = y.clone()
    torch.cuda.synchronize()

    def measured():
        y.fill_(float("nan"))
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _cuda.reset_memory_peak(dev)
        _direct_forward(x, w, p, comp, y)
        torch.cuda.synchronize()
        torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)
        st = _cuda.memory_stats(dev)
        assert st["in_use"] == 0, st
        return torch.cuda.max_memory_allocated() - base, torch.cuda.memory_allocated() - base, st

    rise, left, st = measured()
    assert st["peak"] > 0
    assert rise >= st["peak"], (rise, st)  # every temporary was torch's (rounded up by torch)
    assert left == 0, f"{left} bytes still allocated after the call"
    try:
        _cuda.set_allocator(None, None)  # the backend's default: cudaMallocAsync
        rise0, left0, st0 = measured()
        assert st0["peak"] == st["peak"] and rise0 == 0 and left0 == 0
    finally:
        _backends.use_torch_allocator()


@pytest.mark.cuda
def test_cuda_keeps_nothing_between_calls():
    """Training steps through the public ops: after each step (its tensors gone) torch's
    allocated memory is back where it started, and blfft holds no temporary."""
    from blfft import _cuda

    torch.manual_seed(1)
    model = _Net().to(DEV)
    x = torch.randn(4, 3, 12, 12, device=DEV)
    _step(model, model, x)  # plans, and torch's own lazily made state (grads)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    for _ in range(3):
        torch.cuda.reset_peak_memory_stats()
        out, grads = _step(model, model, x)
        del out, grads
        torch.cuda.synchronize()
        assert torch.cuda.max_memory_allocated() > base
        assert torch.cuda.memory_allocated() == base
        assert _cuda.memory_stats(torch.cuda.current_device())["in_use"] == 0


@pytest.mark.cuda
def test_cuda_graph_capture_refuses_new_plans_clearly():
    """Issue #10 item 4: a layer whose plans were not made before capture is refused with an error
    that says what to do (plans and their tables are made outside capture), not a bare CUDA error.
    Last in this file: the failed capture is torch's to clean up."""
    x = torch.randn(3, 5, 11, 13, device=DEV)
    w = torch.randn(7, 5, 3, 3, device=DEV)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with pytest.raises(Exception) as e:
        with torch.cuda.graph(g):
            BF.conv2d(x, w, padding=1, compress_rate=0.37)  # a geometry no test made before
    # Ending the invalidated capture may raise torch's own error, with blfft's as its context.
    chain, err = [], e.value
    while err is not None and len(chain) < 5:
        chain.append(err)
        err = err.__context__ or err.__cause__
    texts = " | ".join(f"{type(c).__name__}: {c}" for c in chain)
    assert any(isinstance(c, blfft.BlfftError) for c in chain), texts
    assert "run the layer once with the same shapes before capturing" in texts, texts
    torch.cuda.synchronize()
    # Made outside capture, the same layer then works.
    y = BF.conv2d(x, w, padding=1, compress_rate=0.37)
    ref = BF.conv2d(x.cpu(), w.cpu(), padding=1, compress_rate=0.37)
    assert_close(y.cpu(), ref, torch.float32, "after the refused capture")
