"""float16 / bfloat16 tensors on CUDA without up-casting (issue #11).

The contract (cuda/README.md, "Half precision on the device"): blfft._cuda reads and writes
16-bit tensors in their own type and computes in float32 with float32 spectra, so every result is
the float32 computation on the same (already rounded) values, rounded once: what up-casting to
float32 around the call gives, without the float32 copies.

Without a GPU:
- the binding's dtype checks, on tensors labelled kDLCUDA (never dereferenced): every compute
  entry point takes 16-bit tensors with float32 spectra (the call gets as far as the device);
  mixed 16-bit types, 16-bit or float64 spectra beside 16-bit tensors, 16-bit tensors for the
  energy functions, and the 16-bit input gradient from a weight without its spectrum are refused,
  naming the argument; blfft._core refuses 16-bit tensors;
- the Python layer's dtype flow, through a stand-in for blfft._cuda on CPU tensors that applies
  the binding's dtype rules and computes the contract with the CPU core: the ops hand it 16-bit
  tensors and float32 spectra, and every output and gradient is bit for bit the up-casting
  path's (the same stand-in with 16-bit tensors up-cast in Python), for 1D/2D/3D forward and
  gradients, transposed convolutions, saved bfloat16 spectra, cached weight spectra, the second
  order and energy mode.

With a GPU (marked `cuda`; tools/gpu_check.sh runs this file and counts a skip as a failure): the
same comparison on the device against the up-casting path (to one unit in the last place of the
16-bit type, see _assert_ulp), the dtypes each call gets, channels_last 16-bit tensors, the memory
the float32 copies no longer take, and torch.autocast giving 16-bit tensors to this path.
"""

import contextlib

import pytest
import torch
import torch.nn as tnn
from test_dlpack import Producer

import blfft
import blfft.functional as BF
from blfft import _backends, _core, _geometry, _ops, _weight_cache
from helpers import rel_l2

HALF = [torch.float16, torch.bfloat16]
DLPACK_DTYPE = {
    torch.float16: (2, 16, 1),
    torch.bfloat16: (4, 16, 1),
    torch.float32: (2, 32, 1),
    torch.float64: (2, 64, 1),
    torch.int16: (0, 16, 1),
}
NAME = {torch.float16: "float16", torch.bfloat16: "bfloat16"}

needs_module = pytest.mark.skipif(
    _backends.cuda_module is None, reason="blfft._cuda not built in this build"
)


# ================================================================================================
# Without a GPU: the binding's checks
# ================================================================================================


def _on_cuda(t):
    """A DLPack producer of t's memory labelled cuda:0 (never dereferenced without a GPU)."""
    return Producer(t, list(t.shape), device=(2, 0), dtype=DLPACK_DTYPE[t.dtype])


class _Args:
    """The tensors of one 2D call (x, w, bias, y, grad_output, grads, spectra) as kDLCUDA
    producers: 16-bit tensors in `dtype`, spectra in `spec`."""

    def __init__(self, dtype, spec=torch.float32):
        from blfft._geometry import geometry

        self.p, self.c, g = geometry((2, 3, 8, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, 0.5, [])
        self.dtype, self.spec = dtype, spec

        def t(*shape, dt=dtype):
            return _on_cuda(torch.zeros(*shape, dtype=dt))

        self.t = t
        self.x, self.w, self.b = t(2, 3, 8, 9), t(4, 3, 3, 3), t(4)
        self.y, self.go = t(2, 4, 8, 9), t(2, 4, 8, 9)
        self.gx, self.gw, self.gb = t(2, 3, 8, 9), t(4, 3, 3, 3), t(4)
        self.xs = t(g.x_spectrum_size, dt=spec)
        self.ws = t(g.w_spectrum_size, dt=spec)


def _no_device(fn):
    """fn() with 16-bit tensors passes the binding's dtype checks: without a GPU the call ends at
    the device ("no CUDA device"); on a GPU at the plan's pointer check (host memory behind the
    kDLCUDA label)."""
    cuda = _backends.cuda_module
    if cuda.device_count() == 0:
        with pytest.raises(blfft.BlfftError, match="no CUDA device") as e:
            fn()
        assert e.value.code == "unsupported"
    else:
        with pytest.raises(TypeError, match="needs device memory"):
            fn()


@needs_module
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_binding_takes_16bit_tensors_with_float32_spectra(dtype):
    cuda = _backends.cuda_module
    a = _Args(dtype)
    p, c = a.p, a.c
    _no_device(lambda: cuda.forward(p, c, a.x, a.w, a.b, a.y, a.xs, a.ws, 0))
    _no_device(lambda: cuda.forward(p, c, a.x, a.w, None, a.y, None, None, 0))
    _no_device(lambda: cuda.input_spectrum(p, c, a.x, a.xs, 0))
    _no_device(lambda: cuda.weight_spectrum(p, c, a.w, a.ws, 0))
    _no_device(lambda: cuda.forward_spectra(p, c, a.xs, a.ws, a.b, a.y, 0))
    _no_device(lambda: cuda.backward(p, c, a.go, a.xs, a.ws, a.gx, a.gw, a.gb, None, 0))
    _no_device(lambda: cuda.backward(p, c, a.go, a.xs, None, None, a.gw, None, None, 0))


@needs_module
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_binding_refuses_mixed_and_wrong_dtypes_naming_them(dtype):
    cuda = _backends.cuda_module
    a = _Args(dtype)
    p, c = a.p, a.c
    other = HALF[1 - HALF.index(dtype)]
    name, other_name = NAME[dtype], NAME[other]
    # Two 16-bit types in one call.
    with pytest.raises(TypeError, match=f"weight is {other_name} but input is {name}"):
        cuda.forward(p, c, a.x, a.t(4, 3, 3, 3, dt=other), None, a.y, None, None, 0)
    with pytest.raises(TypeError, match=f"bias is {other_name} but input is {name}"):
        cuda.forward(p, c, a.x, a.w, a.t(4, dt=other), a.y, None, None, 0)
    with pytest.raises(TypeError, match=f"output is float32 but input is {name}"):
        cuda.forward(p, c, a.x, a.w, None, a.t(2, 4, 8, 9, dt=torch.float32), None, None, 0)
    with pytest.raises(TypeError, match=f"grad_weight is {other_name} but grad_output is {name}"):
        cuda.backward(p, c, a.go, a.xs, None, None, a.t(4, 3, 3, 3, dt=other), None, None, 0)
    # Spectra are float32 beside 16-bit tensors: neither 16-bit nor float64.
    note = r"\(the spectra of float16 / bfloat16 tensors are float32\)"
    for spec, spec_name in ((dtype, name), (torch.float64, "float64")):
        s = _Args(dtype, spec)
        with pytest.raises(
            TypeError, match=f"x_spectrum is {spec_name} but input is {name} {note}"
        ):
            cuda.forward(p, c, a.x, a.w, None, a.y, s.xs, None, 0)
        with pytest.raises(TypeError, match=f"w_spectrum is {spec_name} but output is {name}"):
            cuda.forward_spectra(p, c, a.xs, s.ws, None, a.y, 0)
        with pytest.raises(TypeError, match=f"x_spectrum is {spec_name} but grad_output is {name}"):
            cuda.backward(p, c, a.go, s.xs, None, None, a.gw, None, None, 0)
    # The 16-bit calls of the backend take spectra only: no input gradient from the weight.
    with pytest.raises(ValueError, match=f"grad_input of {name} tensors needs w_spectrum"):
        cuda.backward(p, c, a.go, None, None, a.gx, None, None, a.w, 0)
    # The energy functions compute float32 / float64 only (the Python layer up-casts for them).
    with pytest.raises(TypeError, match=f"input must be float32 or float64, got {name}"):
        cuda.select_by_energy(p, a.x, 0.9, 0)
    with pytest.raises(TypeError, match=f"input must be float32 or float64, got {name}"):
        cuda.energy_map(p, a.x, 0)
    # A spectrum is never 16-bit: its message names float32 and float64 only.
    with pytest.raises(TypeError, match="x_spectrum must be float32 or float64, got int16"):
        cuda.input_spectrum(p, c, a.x, a.t(9, dt=torch.int16), 0)
    # Other types: the message names the four the module takes.
    with pytest.raises(TypeError, match="must be float32, float64, float16 or bfloat16, got int16"):
        cuda.forward(
            p,
            c,
            Producer(torch.zeros(2, 3, 8, 9), [2, 3, 8, 9], device=(2, 0), dtype=(0, 16, 1)),
            a.w,
            None,
            a.y,
            None,
            None,
            0,
        )


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_core_refuses_16bit_tensors_naming_them(dtype):
    """The CPU core computes float32 / float64 (the Python layer up-casts 16-bit CPU tensors)."""
    from blfft._geometry import geometry

    p, c, g = geometry((2, 3, 8, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, 0.5, [])
    x, w = torch.randn(2, 3, 8, 9).to(dtype), torch.randn(4, 3, 3, 3).to(dtype)
    y = torch.empty(2, 4, 8, 9, dtype=dtype)
    with pytest.raises(
        TypeError,
        match=f"input must be float32 or float64, got {NAME[dtype]} "
        r"\(16-bit tensors are taken by blfft._cuda's convolution calls only",
    ):
        _core.forward(p, c, x, w, None, y)
    with pytest.raises(TypeError, match=f"output must be float32 or float64, got {NAME[dtype]}"):
        _core.forward(p, c, x.float(), w.float(), None, y)
    with pytest.raises(TypeError, match="grad_output must be float32 or float64, got"):
        _core.backward(p, c, y, None, None, None, None, torch.empty(4, dtype=dtype), w)


# ================================================================================================
# Without a GPU: the Python layer's dtype flow, through a stand-in for blfft._cuda
# ================================================================================================

# Positions of the outputs and of the spectra in each compute call of the bindings.
_OUTPUTS = {
    "forward": (5, 6, 7),
    "input_spectrum": (3,),
    "weight_spectrum": (3,),
    "forward_spectra": (5,),
    "backward": (5, 6, 7),
}
_SPECTRA = {
    "forward": (6, 7),
    "input_spectrum": (3,),
    "weight_spectrum": (3,),
    "forward_spectra": (2, 3),
    "backward": (3, 4),
}


def _is_capsule(a) -> bool:
    return type(a).__name__ == "PyCapsule"


class _Cuda16:
    """Looks like blfft._cuda to the ops (it is not _core) on CPU tensors: checks each compute
    call with the binding's dtype rules (the tensors one dtype; the spectra float32 beside 16-bit
    tensors, else the tensors' dtype), records the tensors' dtypes, and computes as the contract
    says: 16-bit inputs read as float32, the float32 computation (the CPU core), each 16-bit
    output rounded once (torch's conversion: nearest even, as the kernels' store_as)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name not in _OUTPUTS:
            return getattr(_core, name)
        outs, spectra = _OUTPUTS[name], _SPECTRA[name]

        def call(*args, **kw):
            ts = [torch.from_dlpack(a) if _is_capsule(a) else a for a in args]
            tensors = {i: t for i, t in enumerate(ts) if isinstance(t, torch.Tensor)}
            dtypes = {t.dtype for i, t in tensors.items() if i not in spectra}
            assert len(dtypes) == 1, (name, dtypes)
            (dtype,) = dtypes
            compute = torch.float32 if dtype in HALF else dtype
            for i in spectra:
                assert i not in tensors or tensors[i].dtype == compute, (name, i, tensors[i].dtype)
            self.calls.append((name, dtype))
            up = list(ts)
            for i, t in tensors.items():
                if t.dtype in HALF:
                    up[i] = torch.empty(t.shape, dtype=compute) if i in outs else t.float()
            result = getattr(_core, name)(*up, **kw)
            for i in outs:
                if up[i] is not ts[i]:
                    ts[i].copy_(up[i])
            return result

        return call


def _grads(fn, leaves, seed=0):
    """fn(*leaves) and the gradients of <out, g> for a fixed random g (None where unused)."""
    ls = [t.detach().clone().requires_grad_() for t in leaves]
    y = fn(*ls)
    torch.manual_seed(seed)
    g = torch.randn(y.shape).to(y.device, y.dtype)
    grads = torch.autograd.grad(y, ls, g, allow_unused=True)
    return [y.detach()] + [None if t is None else t.detach() for t in grads]


def _through_stand_in(monkeypatch, fn, leaves, native):
    """fn's output and gradients with the ops dispatched to _Cuda16; `native` False: 16-bit
    tensors up-cast in Python as for the CPU core (the oracle). Returns (results, calls)."""
    rec = _Cuda16()
    with monkeypatch.context() as m:
        m.setattr(_ops, "backend_for", lambda t, name, *others: (rec, ()))
        if not native:
            m.setattr(_ops, "_native16", lambda *a: False)
        out = _grads(fn, leaves)
    return out, rec.calls


def _settings_case(saved=None, x_mode="auto", w_mode="auto"):
    def apply():
        blfft.set_saved_spectrum_dtype(saved)
        blfft.set_input_spectrum_saving(x_mode)
        blfft.set_weight_spectrum_saving(w_mode)

    return apply


def _penalty(fn):
    """A gradient penalty: the second-order passes (conv_backward's own backward)."""

    def run(x, w, b):
        y = fn(x, w, b)
        # In float32 and means: float16 overflows otherwise (inf and NaN compare unequal).
        (gx,) = torch.autograd.grad(y.float().square().mean(), x, create_graph=True)
        return y + gx.float().square().mean().to(y.dtype)

    return run


_T = torch.randn
CASES = {
    "conv2d": (
        lambda x, w, b: BF.conv2d(x, w, b, padding=1, groups=2, compress_rate=0.5),
        (_T(3, 4, 11, 10), _T(6, 2, 3, 3) / 3, _T(6)),
    ),
    "conv1d stride": (
        lambda x, w, b: BF.conv1d(x, w, b, stride=2, compress_rate=0.3),
        (_T(2, 3, 40), _T(5, 3, 4) / 3, _T(5)),
    ),
    "conv3d": (
        lambda x, w, b: BF.conv3d(x, w, b, padding=1, compress_rate=0.5),
        (_T(2, 2, 6, 7, 5), _T(3, 2, 3, 3, 3) / 5, _T(3)),
    ),
    "conv_transpose2d": (
        lambda x, w, b: BF.conv_transpose2d(x, w, b, stride=2, padding=1),
        (_T(2, 4, 7, 6), _T(4, 3, 3, 3) / 3, _T(3)),
    ),
    "conv_transpose2d no bias": (
        lambda x, w, b: BF.conv_transpose2d(x, w, stride=2) + b.sum(),
        (_T(2, 4, 7, 6), _T(4, 3, 3, 3) / 3, _T(1)),
    ),
    "energy": (
        lambda x, w, b: BF.conv2d(x, w, b, padding=1, energy=0.9),
        (_T(2, 4, 12, 12), _T(5, 4, 3, 3) / 3, _T(5)),
    ),
    "second order": (
        _penalty(lambda x, w, b: BF.conv2d(x, w, b, padding=1, compress_rate=0.5)),
        (_T(2, 3, 9, 9), _T(4, 3, 3, 3) / 3, _T(4)),
    ),
}
CHAINED = {"second order"}  # results computed from 16-bit intermediate results
SETTINGS = {
    "default": _settings_case(),
    "bfloat16 spectra kept": _settings_case(torch.bfloat16, "keep", "keep"),
    "spectra recomputed": _settings_case(None, "recompute", "recompute"),
}


@pytest.fixture
def _restore_settings():
    saved = (
        blfft.get_saved_spectrum_dtype(),
        blfft.get_input_spectrum_saving(),
        blfft.get_weight_spectrum_saving(),
    )
    yield
    _settings_case(*saved)()


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_ops_hand_16bit_tensors_to_the_cuda_module_bitwise_as_upcasting(
    monkeypatch, _restore_settings, dtype, case, setting
):
    fn, leaves = CASES[case]
    leaves = [t.to(dtype) for t in leaves]
    SETTINGS[setting]()
    ours, calls = _through_stand_in(monkeypatch, fn, leaves, native=True)
    ref, ref_calls = _through_stand_in(monkeypatch, fn, leaves, native=False)
    assert {d for _, d in ref_calls} == {torch.float32}  # the oracle computed in float32
    for i, (a, r) in enumerate(zip(ours, ref, strict=True)):
        assert a.dtype == dtype, (i, a.dtype)
        assert torch.isfinite(r).all(), f"result {i}: the case overflows {dtype}"
        assert torch.equal(a, r), f"result {i}: differs from up-casting"
    # What the module was handed: 16-bit tensors, except around a transposed convolution's bias
    # (added in float32 before the one rounding) and the float32 energy look-up.
    kinds = {d for _, d in calls}
    assert dtype in kinds, calls
    if case != "conv_transpose2d":
        assert kinds == {dtype}, calls


def test_ops_keep_mixed_dtypes_on_the_upcasting_path(monkeypatch):
    """A call whose tensors are not all one 16-bit type (a float32 bias beside float16 tensors, as
    a direct op call may pass) is up-cast as before."""
    x, w, b = torch.randn(2, 3, 8, 8).half(), torch.randn(4, 3, 3, 3).half(), torch.randn(4)
    rec = _Cuda16()
    monkeypatch.setattr(_ops, "backend_for", lambda t, name, *others: (rec, ()))
    y, _, _ = torch.ops.blfft.conv_forward(
        x, w, b, [1, 1], [1, 1], [1, 1], 1, 0.5, [], False, False
    )
    assert y.dtype == torch.float16
    assert rec.calls == [("forward", torch.float32)]


def _layout_on_any_device(t):
    """_ops._layout without its CUDA condition, so that CPU tensors stand in for CUDA ones."""
    fmt = _ops._CHANNELS_LAST.get(t.dim()) if t is not None else None
    if fmt is not None and not t.is_contiguous() and t.is_contiguous(memory_format=fmt):
        return fmt
    return torch.contiguous_format


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_upcasting_path_keeps_the_layout_the_fake_kernels_give(monkeypatch, dtype):
    """On the up-casting path (tensors of mixed dtypes), outputs and input gradients take the
    layout of x as given, as the fake kernels say: up-casting a strided view ordered
    channels_last (here every other column of a channels_last tensor, neither layout's
    contiguous) makes a dense channels_last copy, whose layout the output took before."""
    monkeypatch.setattr(_ops, "_layout", _layout_on_any_device)
    monkeypatch.setattr(_ops, "backend_for", lambda t, name, *others: (_Cuda16(), ()))
    x = torch.randn(2, 4, 6, 12).to(dtype).contiguous(memory_format=torch.channels_last)[..., ::2]
    w, b = (torch.randn(5, 4, 3, 3) / 3).to(dtype), torch.randn(5)  # a float32 bias
    assert _ops._layout(x) is torch.contiguous_format and _ops._layout(x.float()) is not (
        torch.contiguous_format
    )
    conf = ([1, 1], [1, 1], [1, 1], 1, 0.5, [])
    args = (x, w, b, *conf, False, False)
    y, fake = torch.ops.blfft.conv_forward(*args)[0], _ops._conv_forward_fake(*args)[0]
    assert (y.dtype, y.stride()) == (fake.dtype, fake.stride()), "conv_forward"
    go = torch.randn(y.shape).to(dtype)
    args = (go, x, None, w.float(), None, list(x.shape), list(w.shape), *conf, True, True, True)
    gx, fake = torch.ops.blfft.conv_backward(*args)[0], _ops._conv_backward_fake(*args)[0]
    assert (gx.dtype, gx.stride()) == (fake.dtype, fake.stride()), "conv_backward"
    ws = torch.randn(_geometry_of(x, w).w_spectrum_size)
    args = (x, ws, b, list(w.shape), *conf)
    y, fake = torch.ops.blfft.conv_forward_cached(*args), _ops._conv_forward_cached_fake(*args)
    assert (y.dtype, y.stride()) == (fake.dtype, fake.stride()), "conv_forward_cached"


@pytest.mark.parametrize("dtype", [torch.float32, *HALF], ids=str)
def test_forward_w_spectrum_fake_gives_the_real_layout(monkeypatch, dtype):
    """conv_forward_w_spectrum (a layer training with its cached weight spectrum) returns y in
    x's layout, channels_last for a channels_last CUDA x; its fake kernel said contiguous."""
    monkeypatch.setattr(_ops, "_layout", _layout_on_any_device)
    monkeypatch.setattr(_ops, "backend_for", lambda t, name, *others: (_Cuda16(), ()))
    x = torch.randn(2, 4, 6, 7).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, 4, 3, 3)
    ws = torch.randn(_geometry_of(x, w).w_spectrum_size)
    args = (x, ws, None, list(w.shape), [1, 1], [1, 1], [1, 1], 1, 0.5, [], True, "", "keep")
    real = torch.ops.blfft.conv_forward_w_spectrum(*args)
    fake = _ops._conv_forward_w_spectrum_fake(*args)
    assert real[0].is_contiguous(memory_format=torch.channels_last)
    for r, f in zip(real, fake, strict=True):
        assert (r.dtype, r.shape, r.stride()) == (f.dtype, f.shape, f.stride())


def _geometry_of(x, w):
    from blfft._geometry import geometry

    return geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.5, [])[2]


def test_module_with_cached_weight_spectrum(monkeypatch):
    """A layer with cache_weight_spectrum (training and inference): its float32 weight spectrum
    meets 16-bit activations, bit for bit as up-casting."""
    torch.manual_seed(0)
    for dtype in HALF:
        results = []
        for native in (True, False):
            torch.manual_seed(0)
            model = tnn.Sequential(
                tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), tnn.ConvTranspose2d(8, 4, 2, stride=2)
            ).to(dtype)
            blfft.convert(model, compress_rate=0.5, cache_weight_spectrum=True)
            x = torch.randn(2, 3, 8, 8).to(dtype)
            rec = _Cuda16()
            with monkeypatch.context() as m:
                m.setattr(_ops, "backend_for", lambda t, name, *o, rec=rec: (rec, ()))
                if not native:
                    m.setattr(_ops, "_native16", lambda *a: False)
                y = model(x)
                y.float().sum().backward()
                model.eval()
                with torch.no_grad():
                    z = model(x)
            results.append([y, z] + [p.grad for p in model.parameters()])
            if native:
                assert ("forward_spectra", dtype) in rec.calls, rec.calls
        for a, r in zip(*results, strict=True):
            assert a.dtype == dtype and torch.equal(a, r)


def test_weight_cache_hands_16bit_weights_to_the_cuda_module(monkeypatch):
    """A cache_weight_spectrum layer's cached spectrum of a 16-bit weight: made by blfft._cuda
    (here _Cuda16) from the weight as it is, a float32 spectrum bit for bit that of the up-cast
    weight, and the cached layer's output bit for bit the uncached one's (also on the CPU core,
    which gets the weight up-cast). A change of the weight's dtype, same values, is a miss."""
    for dtype in HALF:
        torch.manual_seed(0)
        kw = dict(compress_rate=0.5, padding=1, dtype=dtype)
        m = blfft.nn.Conv2d(3, 4, 3, cache_weight_spectrum=True, **kw)
        ref = blfft.nn.Conv2d(3, 4, 3, **kw)
        ref.load_state_dict(m.state_dict())
        x = torch.randn(2, 3, 8, 8).to(dtype)
        cache = m._blfft_weight_cache
        rec = _Cuda16()
        with monkeypatch.context() as mp, torch.no_grad():
            mp.setattr(_ops, "backend_for", lambda t, name, *o, rec=rec: (rec, ()))
            mp.setattr(_weight_cache, "backend_for", lambda t, name, *o, rec=rec: (rec, ()))
            y, y_ref = m(x), ref(x)
            assert ("weight_spectrum", dtype) in rec.calls, rec.calls
            assert ("weight_spectrum", torch.float32) not in rec.calls, "no float32 copy"
            assert y.dtype == dtype and torch.equal(y, y_ref)
            ws = cache._entry[2]
            assert ws.dtype == torch.float32
            want = torch.empty_like(ws)
            conf = cache._entry[0]
            p, c, _ = _geometry.geometry(conf[0], conf[1], *conf[4:10])
            _core.weight_spectrum(p, c, _backends.dl(m.weight.float()), _backends.dl(want))
            assert torch.equal(ws, want)
            assert torch.equal(m(x), y) and (cache.misses, cache.hits) == (1, 1)
            # the same values in float32: another entry, made from the float32 weight
            rec.calls.clear()
            m.float()
            assert torch.equal(m(x.float()), ref.float()(x.float()))
            assert (cache.misses, cache.hits) == (2, 1)
            assert ("weight_spectrum", torch.float32) in rec.calls, rec.calls
            assert torch.equal(cache._entry[2], want)
        # the CPU core: the 16-bit weight up-cast (the core refuses 16-bit tensors)
        m.to(dtype)
        ref.to(dtype)
        with torch.no_grad():
            assert torch.equal(m(x), ref(x))
        assert cache._entry[2].dtype == torch.float32 and torch.equal(cache._entry[2], want)


# ================================================================================================
# With a GPU (the bodies also run on the stand-in above, on the CPU, so that they are checked
# here too)
# ================================================================================================

_MANTISSA = {torch.float16: 10, torch.bfloat16: 7}
_MIN_EXP = {torch.float16: -14, torch.bfloat16: -126}


def _spacing(r: torch.Tensor) -> torch.Tensor:
    """One unit in the last place of r's 16-bit type at |r| (float32; subnormals included)."""
    rf = r.float().abs()
    _, e = torch.frexp(rf)  # rf = m * 2**e, 0.5 <= m < 1
    e = torch.where(rf == 0, torch.full_like(e, _MIN_EXP[r.dtype]), e - 1)
    e = torch.clamp(e, min=_MIN_EXP[r.dtype])
    return torch.ldexp(torch.ones_like(rf), e - _MANTISSA[r.dtype])


def _assert_rounded_once(a, r, what) -> float:
    """a (the 16-bit path) against r (up-casting: the float32 computation on the same values,
    rounded once), both 16-bit. Each is a float32 result rounded to 16 bits; the two float32
    results come from the same spectra and (with the 16-bit taps path) the same mixing choice,
    but a device run has not checked that their arithmetic is the same everywhere, so they may
    differ by float32 rounding error, below 2**-16 of the largest magnitude; rounded to 16 bits
    they are then equal or neighbours: one unit in the last place. Returns the fraction of
    elements that are equal."""
    assert a.dtype == r.dtype and a.shape == r.shape and a.device == r.device, what
    af, rf = a.float(), r.float()
    assert torch.isfinite(af).all(), f"{what}: not finite"
    bound = _spacing(r) + 2.0**-16 * rf.abs().max()
    excess = ((af - rf).abs() - bound).max()
    assert excess <= 0, f"{what}: beyond one unit in the last place of {a.dtype}"
    return float((af == rf).float().mean())


@contextlib.contextmanager
def _strict_float32():
    """TF32 off for the float32 mixing of both paths (torch.backends.cudnn.allow_tf32, which
    blfft's CUDA calls follow), so that the two differ by float32 rounding only (through
    torch's flags() context manager; the other cuDNN flags keep their values)."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled,
        benchmark=cudnn.benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=False,
    ):
        yield


class _Seen:
    """Records (dtype, shape) of each tensor the ops hand to a binding (through _ops.dl)."""

    def __init__(self, m):
        self.seen = []
        real = _ops.dl

        def dl(t):
            if t is not None:
                self.seen.append((t.dtype, tuple(t.shape)))
            return real(t)

        m.setattr(_ops, "dl", dl)


def _compare_to_upcasting(monkeypatch, device, dtype, case, memory_format=None, exact=False):
    """CASES[case] in `dtype` on `device` through the 16-bit path and through up-casting (the
    oracle): dtypes, devices and layouts of the results, no float32 copy of the input handed to
    the backend, results rounded once (exact: bitwise). Returns the fraction of equal elements."""
    fn, leaves = CASES[case]
    leaves = [t.to(device, dtype) for t in leaves]
    if memory_format is not None:
        leaves[0] = leaves[0].contiguous(memory_format=memory_format)
    with monkeypatch.context() as m, _strict_float32():
        seen = _Seen(m)
        ours = _grads(fn, leaves)
    with monkeypatch.context() as m, _strict_float32():
        m.setattr(_ops, "_native16", lambda *a: False)
        ref = _grads(fn, leaves)
    x_shape = tuple(leaves[0].shape)
    assert (dtype, x_shape) in seen.seen, seen.seen
    if case not in ("energy", "conv_transpose2d"):  # these two up-cast the input (see above)
        assert (torch.float32, x_shape) not in seen.seen, seen.seen
    if memory_format is not None and device == "cuda":
        assert ours[0].is_contiguous(memory_format=memory_format)
        assert ours[1].is_contiguous(memory_format=memory_format)  # grad_input
    equal, total = 0.0, 0
    for i, (a, r) in enumerate(zip(ours, ref, strict=True)):
        assert a.dtype == dtype and a.device.type == device, (i, a.dtype, a.device)
        if exact:
            assert torch.equal(a, r), f"{case}: result {i} differs from up-casting"
        if case in CHAINED and not exact:
            # 16-bit intermediate results (a unit apart where their float32 values straddle a
            # rounding boundary, rarely) feed later passes: a relative l2 bound of one unit.
            err = rel_l2(a, r)
            assert err <= 2.0 ** -_MANTISSA[dtype], f"{case}: result {i}: {err:.3g}"
            equal += float((a == r).float().mean()) * a.numel()
        else:
            equal += _assert_rounded_once(a, r, f"{case}: result {i}") * a.numel()
        total += a.numel()
    return equal / total


def _autocast_hands_16bit(monkeypatch, device, dtype):
    """Under torch.autocast(device, dtype) float32 tensors reach the backend cast to `dtype`, not
    up-cast again: the output is the op's on the rounded tensors, bit for bit; the parameters'
    gradients are float32."""
    x = torch.randn(2, 4, 10, 9, device=device)
    w = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    with monkeypatch.context() as m:
        seen = _Seen(m)
        with torch.autocast(device, dtype=dtype):
            y = BF.conv2d(x, w, b, padding=1, compress_rate=0.5)
        y.float().square().sum().backward()
    assert y.dtype == dtype
    assert (dtype, tuple(x.shape)) in seen.seen and (torch.float32, tuple(x.shape)) not in seen.seen
    ref = BF.conv2d(
        x.to(dtype), w.detach().to(dtype), b.detach().to(dtype), padding=1, compress_rate=0.5
    )
    assert torch.equal(y, ref)
    assert w.grad.dtype == b.grad.dtype == torch.float32


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gpu_checks_hold_on_the_stand_in(monkeypatch, dtype):
    """The GPU tests' bodies on the CPU through _Cuda16 (exact there: the same float32 calls)."""
    rec = _Cuda16()
    monkeypatch.setattr(_ops, "backend_for", lambda t, name, *others: (rec, ()))
    for case in ("conv2d", "conv_transpose2d", "energy"):
        assert _compare_to_upcasting(monkeypatch, "cpu", dtype, case, exact=True) == 1.0
    _compare_to_upcasting(monkeypatch, "cpu", dtype, "conv2d", torch.channels_last, exact=True)
    assert _compare_to_upcasting(monkeypatch, "cpu", dtype, "second order") == 1.0
    _autocast_hands_16bit(monkeypatch, "cpu", dtype)
    # The tolerance refuses two units in the last place.
    r = torch.tensor([1.0, -3.0, 0.0]).to(dtype)
    _assert_rounded_once(r, r, "equal")
    with pytest.raises(AssertionError, match="beyond one unit"):
        _assert_rounded_once(r + 2 * _spacing(r).to(dtype), r, "two apart")


@pytest.mark.cuda
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_16bit_matches_upcasting(monkeypatch, _restore_settings, dtype, case):
    for setting in ("default", "bfloat16 spectra kept"):
        SETTINGS[setting]()
        equal = _compare_to_upcasting(monkeypatch, "cuda", dtype, case)
        print(f"{dtype} {case} ({setting}): {equal:.4f} of the elements equal to up-casting")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_16bit_channels_last(monkeypatch, dtype):
    _compare_to_upcasting(monkeypatch, "cuda", dtype, "conv2d", torch.channels_last)
    _compare_to_upcasting(monkeypatch, "cuda", dtype, "conv3d", torch.channels_last_3d)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_autocast_reaches_the_16bit_path(monkeypatch, dtype):
    _autocast_hands_16bit(monkeypatch, "cuda", dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_cuda_16bit_forward_allocates_no_float32_copies(monkeypatch, _restore_settings, dtype):
    """The peak memory of a 16-bit forward is below the up-casting one's by at least the float32
    copy of the input (torch's allocator counts blfft's temporaries too). The weight spectrum is
    kept (a training forward with weight spectrum saving "keep"), so that both paths make it."""
    blfft.set_weight_spectrum_saving("keep")
    # Both require grad: the weight spectrum is kept for the input gradient.
    x = torch.randn(16, 64, 64, 64, device="cuda").to(dtype).requires_grad_()
    w = (torch.randn(64, 64, 3, 3, device="cuda") / 24).to(dtype).requires_grad_()

    def peak():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        y = BF.conv2d(x, w, padding=1, compress_rate=0.5)
        torch.cuda.synchronize()
        assert y.dtype == dtype
        return torch.cuda.max_memory_allocated() - base

    peak()  # plans and the allocator's first blocks
    native = peak()
    with monkeypatch.context() as m:
        m.setattr(_ops, "_native16", lambda *a: False)
        peak()
        upcast = peak()
    print(f"{dtype} forward peak: {native / 2**20:.1f} MiB, up-casting {upcast / 2**20:.1f} MiB")
    assert native + 4 * x.numel() <= upcast


@pytest.mark.parametrize("stand_in", [True, False], ids=["cuda stand-in", "cpu"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_ops_pass_opcheck_with_16bit_tensors(monkeypatch, dtype, stand_in):
    """torch.library.opcheck with 16-bit tensors, on the 16-bit path (through _Cuda16) and the
    CPU's up-casting one: the fake kernels give the dtypes the ops return (16-bit outputs and
    gradients, float32 or bfloat16 spectra; conv_forward_w_spectrum's fake kernel said 16-bit
    for its float32 input spectrum)."""
    from helpers import conv_backward_args

    rec = _Cuda16()
    if stand_in:
        monkeypatch.setattr(_ops, "backend_for", lambda t, name, *others: (rec, ()))
    x = torch.randn(2, 3, 8, 7).to(dtype).requires_grad_()
    w = torch.randn(4, 3, 3, 3).to(dtype).requires_grad_()
    b = torch.randn(4).to(dtype).requires_grad_()
    conf = ([1, 1], [1, 1], [1, 1], 1, 0.5, [])
    ops = torch.ops.blfft
    for extra in [(), ("keep",), ("keep", "bfloat16", "keep"), ("recompute", "", "recompute")]:
        torch.library.opcheck(ops.conv_forward.default, (x, w, b, *conf, True, True, *extra))
    g = torch.randn(2, 4, 8, 7).to(dtype)
    torch.library.opcheck(ops.conv_backward.default, conv_backward_args(g, x, w))
    _, xs, ws = ops.conv_forward(x, w, b, *conf, True, True, "keep", "", "keep")
    assert xs.dtype == ws.dtype == torch.float32
    # These ops have no autograd formula of their own (the layers' Functions differentiate).
    x, w, b, xs, ws = (t.detach() for t in (x, w, b, xs, ws))
    for mode in ("keep", "recompute"):
        torch.library.opcheck(
            ops.conv_forward_w_spectrum.default, (x, ws, b, [4, 3, 3, 3], *conf, True, "", mode)
        )
    torch.library.opcheck(ops.conv_forward_cached.default, (x, ws, b, [4, 3, 3, 3], *conf))
    torch.library.opcheck(ops.conv_forward_from_x_spectrum.default, (xs, w, [2, 3, 8, 7], *conf))
    assert {d for _, d in rec.calls} == ({dtype} if stand_in else set()), rec.calls
