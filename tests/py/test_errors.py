"""Bad inputs raise the promised exception, with a message naming the argument, and leave every
input untouched."""

import pytest
import torch

import blfft
import blfft.functional as BF


def _args(ndim=2, dtype=torch.float32):
    spatial = (10,) if ndim == 1 else (8, 9)
    x = torch.randn(2, 4, *spatial, dtype=dtype, requires_grad=True)
    w = torch.randn(6, 2, *((3,) * ndim), dtype=dtype, requires_grad=True)
    b = torch.randn(6, dtype=dtype, requires_grad=True)
    return x, w, b


def _conv2d(**kw):
    """conv2d of the valid arguments with the keyword arguments `kw` (groups=2 unless given)."""
    kw = {"groups": 2, **kw}
    return lambda x, w, b: BF.conv2d(x, w, b, **kw)


# (description, function, exception, message fragment)
CASES = [
    (
        "int input",
        lambda x, w, b: BF.conv2d(x.long(), w, b, groups=2),
        TypeError,
        "input must be float32 or float64, got torch.int64",
    ),
    # float16 and bfloat16 are taken (computed in float32: test_half.py); float8 is not, and the
    # two half types do not mix.
    (
        "float8 input",
        lambda x, w, b: BF.conv2d(x.to(torch.float8_e4m3fn), w, None, groups=2),
        TypeError,
        "input must be float32 or float64, got torch.float8_e4m3fn",
    ),
    (
        "half and bfloat16",
        lambda x, w, b: BF.conv2d(x.bfloat16(), w.half(), groups=2),
        TypeError,
        "weight has dtype torch.float16 but input has dtype torch.bfloat16",
    ),
    (
        "complex",
        lambda x, w, b: BF.conv2d(x.cfloat(), w.cfloat(), groups=2),
        TypeError,
        "float32 or float64",
    ),
    (
        "mixed dtype weight",
        lambda x, w, b: BF.conv2d(x, w.double(), b, groups=2),
        TypeError,
        "weight has dtype torch.float64 but input has dtype torch.float32",
    ),
    (
        "mixed dtype bias",
        lambda x, w, b: BF.conv2d(x, w, b.double(), groups=2),
        TypeError,
        "bias has dtype torch.float64",
    ),
    (
        "mixed device",
        lambda x, w, b: BF.conv2d(x, w.to("meta"), b, groups=2),
        TypeError,
        "weight is on meta but input is on cpu",
    ),
    (
        "not a tensor",
        lambda x, w, b: BF.conv2d(x.tolist(), w, b, groups=2),
        TypeError,
        "input must be a torch.Tensor",
    ),
    (
        "weight not a tensor",
        lambda x, w, b: BF.conv2d(x, 3.0, b, groups=2),
        TypeError,
        "weight must be a torch.Tensor",
    ),
    (
        "bias not a tensor",
        lambda x, w, b: BF.conv2d(x, w, [0.0] * 6, groups=2),
        TypeError,
        "bias must be a torch.Tensor or None",
    ),
    (
        "input rank",
        lambda x, w, b: BF.conv2d(x[0, 0], w, b, groups=2),
        ValueError,
        "input must have 4 dimensions",
    ),
    (
        "input rank 5",
        lambda x, w, b: BF.conv2d(x[None], w, b, groups=2),
        ValueError,
        "input must have 4 dimensions",
    ),
    (
        "weight rank",
        lambda x, w, b: BF.conv2d(x, w[0], b, groups=2),
        ValueError,
        "weight must have 4 dimensions",
    ),
    (
        "conv1d with 2d weight",
        lambda x, w, b: BF.conv1d(x[..., 0], w, b, groups=2),
        ValueError,
        "weight must have 3 dimensions",
    ),
    (
        "bias shape",
        lambda x, w, b: BF.conv2d(x, w, b[:5], groups=2),
        ValueError,
        "bias must have shape (6,)",
    ),
    (
        "channels",
        lambda x, w, b: BF.conv2d(x, w, b),
        ValueError,
        "input has 4 channels but weight of shape (6, 2, 3, 3) with groups=1 expects 2",
    ),
    (
        "groups divide F",
        lambda x, w, b: BF.conv2d(x, w[:5], None, groups=2),
        ValueError,
        "weight has 5 output channels, not divisible by groups=2",
    ),
    ("groups zero", _conv2d(groups=0), ValueError, "groups must be >= 1"),
    ("groups float", _conv2d(groups=2.0), TypeError, "groups must be a positive int"),
    ("stride zero", _conv2d(stride=0, groups=2), ValueError, "stride must be >= 1"),
    (
        "stride tuple length",
        _conv2d(stride=(1, 1, 1), groups=2),
        TypeError,
        "stride must be an int or a tuple of 2 int(s)",
    ),
    ("padding negative", _conv2d(padding=-1, groups=2), ValueError, "padding must be >= 0"),
    (
        "padding string",
        _conv2d(padding="full", groups=2),
        ValueError,
        "padding must be 'same', 'valid'",
    ),
    (
        "same with stride",
        _conv2d(padding="same", stride=2, groups=2),
        ValueError,
        "padding='same' is not supported for strided convolutions",
    ),
    ("dilation zero", _conv2d(dilation=(1, 0), groups=2), ValueError, "dilation must be >= 1"),
    (
        "kernel too large",
        _conv2d(dilation=5, groups=2),
        ValueError,
        "is larger than the padded input",
    ),
    (
        "rate one",
        _conv2d(groups=2, compress_rate=1.0),
        ValueError,
        "compress_rate must be in [0, 1)",
    ),
    (
        "rate negative",
        _conv2d(groups=2, compress_rate=-0.1),
        ValueError,
        "compress_rate must be in [0, 1)",
    ),
    (
        "rate nan",
        _conv2d(groups=2, compress_rate=float("nan")),
        ValueError,
        "compress_rate must be in [0, 1)",
    ),
    (
        "rate string",
        _conv2d(groups=2, compress_rate="0.5"),
        TypeError,
        "compress_rate must be a float",
    ),
    ("energy zero", _conv2d(groups=2, energy=0.0), ValueError, "energy must be in (0, 1]"),
    ("energy above one", _conv2d(groups=2, energy=1.5), ValueError, "energy must be in (0, 1]"),
    ("rate and energy", _conv2d(groups=2, compress_rate=0.5, energy=0.9), ValueError, "not both"),
    (
        "zero channels",
        lambda x, w, b: BF.conv2d(x[:, :0], w[:, :0], b, groups=1),
        ValueError,
        "in_channels must be >= 1",
    ),
    (
        "zero width",
        lambda x, w, b: BF.conv2d(x[..., :0], w, b, groups=2, padding=1),
        ValueError,
        "input width must be >= 1",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_and_leaves_inputs_untouched(case):
    _, fn, exc, fragment = case
    x, w, b = _args()
    before = [t.detach().clone() for t in (x, w, b)]
    with pytest.raises(exc) as info:
        fn(x, w, b)
    assert fragment in str(info.value), str(info.value)
    for t, t0 in zip((x, w, b), before, strict=True):
        assert torch.equal(t.detach(), t0)
        assert t.grad is None


def test_error_classes():
    assert issubclass(blfft.BlfftError, RuntimeError)
    assert blfft.BlfftError.__module__ == "blfft"


def test_successful_calls_leave_inputs_untouched():
    for ndim, fn in ((1, BF.conv1d), (2, BF.conv2d)):
        for kw in (dict(compress_rate=0.6), dict(energy=0.9), dict(padding="same")):
            x, w, b = _args(ndim, torch.float64)
            xt = x.detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_()
            before = [t.detach().clone() for t in (xt, w, b)]
            y = fn(xt, w, b, groups=2, **kw)
            g = torch.randn_like(y)
            g0 = g.clone()
            y.backward(g)
            for t, t0 in zip((xt, w, b), before, strict=True):
                assert torch.equal(t.detach(), t0)
            assert torch.equal(g, g0)


def test_build_info():
    info = blfft.build_info()
    assert info["version"] == blfft.__version__
    assert info["gpu_available"] == torch.cuda.is_available()
    # The CUDA fields: tests/py/test_cuda.py.
    assert info["num_threads"] >= 1


def test_binding_refuses_tensors_of_rank_above_five():
    # Views hold their shape inline (at most 5 axes: N, C and three spatial); a larger rank is
    # refused by name before any view is made.
    core = blfft._core
    p = core.ConvParams.conv2d(2, 4, 6, (8, 9), (3, 3))
    x = torch.zeros(2, 4, 8, 9, 1, 1)
    w = torch.zeros(6, 4, 3, 3)
    y = torch.zeros(2, 6, 6, 7)
    with pytest.raises(ValueError, match="input has rank 6; blfft takes at most 5"):
        core.forward(p, core.Compression.none(), x, w, None, y)


def test_binding_spectra_are_flat_buffers_of_the_geometry_length():
    # The bindings pass a spectrum tensor to the plan as (pointer, length): any contiguous tensor
    # of exactly the geometry's number of scalars, wherever it starts in its storage and whatever
    # its shape; a strided, expanded or transposed one is refused by name, and so is a wrong
    # length, also where the call does not read that spectrum.
    core = blfft._core
    p = core.ConvParams.conv2d(2, 4, 6, (8, 9), (3, 3))
    c = core.Compression.rate(0.5)
    g = core.make_geometry(p, c)
    nx, nw = g.x_spectrum_size, g.w_spectrum_size
    x, w, go = torch.randn(2, 4, 8, 9), torch.randn(6, 4, 3, 3), torch.randn(2, 6, 6, 7)
    y, xs, ws = torch.zeros(2, 6, 6, 7), torch.zeros(nx), torch.zeros(nw)
    core.forward(p, c, x, w, None, y, xs, ws)

    storage = torch.full((nx + 7,), float("nan"))
    core.input_spectrum(p, c, x, storage[5 : 5 + nx])  # starts 5 scalars into its storage
    assert torch.equal(storage[5 : 5 + nx], xs) and storage[:5].isnan().all()
    assert storage[5 + nx :].isnan().all(), "wrote past the spectrum"
    shaped = torch.zeros(2, nx // 2)
    core.input_spectrum(p, c, x, shaped)
    assert torch.equal(shaped.reshape(-1), xs)
    odd = torch.zeros(1, nx).as_strided((1, nx), (12345, 1))  # size-1 axis: any stride
    core.input_spectrum(p, c, x, odd)
    assert torch.equal(odd.reshape(-1), xs)

    for bad in [
        torch.zeros(2 * nx)[::2],  # strided
        torch.zeros(1).expand(nx),  # expanded
        torch.zeros(nx // 2, 2).t(),  # transposed
    ]:
        with pytest.raises(ValueError, match="x_spectrum must be contiguous"):
            core.input_spectrum(p, c, x, bad)
    dw = torch.zeros(6, 4, 3, 3)
    with pytest.raises(ValueError, match=f"x_spectrum has {nx - 1} elements"):
        core.backward(p, c, go, xs[:-1], ws, None, dw, None)
    # grad_input is None: w_spectrum is not read, and still checked.
    with pytest.raises(ValueError, match=f"w_spectrum has {nw + 1} elements"):
        core.backward(p, c, go, xs, torch.zeros(nw + 1), None, dw, None)
