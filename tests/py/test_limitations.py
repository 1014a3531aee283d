"""README's "Limitations": each listed error is the one raised (and named there)."""

import io
import pathlib
import re
import warnings

import pytest
import torch
import torch.fx.experimental.symbolic_shapes  # noqa: F401 (an exception class README names)
import torch.nn as tnn

import blfft
import blfft.functional as BF

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _limitations() -> str:
    text = README.read_text()
    m = re.search(r"^### Limitations\n(.*?)(?=^#)", text, flags=re.S | re.M)
    assert m, "README has no Limitations section"
    return " ".join(m.group(1).split())  # line breaks as spaces


def _model():
    return blfft.nn.Conv2d(2, 3, 3, compress_rate=0.5), torch.randn(1, 2, 8, 8)


def _script():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates TorchScript
        torch.jit.script(_model()[0])


def _trace():
    m, x = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(m, x)


def _onnx():
    m, x = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), io.BytesIO(), dynamo=False)


def _conv3d_input():
    BF.conv_transpose2d(torch.randn(1, 2, 4, 4, 4), torch.randn(2, 3, 3, 3, 3))


def _conv3d_energy():
    BF.conv3d(torch.randn(1, 2, 4, 4, 4), torch.randn(3, 2, 3, 3, 3), energy=0.9)


def _forward_ad():
    import torch.autograd.forward_ad as fwAD

    x, w = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    with warnings.catch_warnings(), fwAD.dual_level():
        warnings.simplefilter("ignore")  # torch's forward AD loads TorchScript decompositions
        BF.conv2d(fwAD.make_dual(x, torch.ones_like(x)), w)


def _transposed_energy():
    blfft.nn.ConvTranspose2d(4, 2, 3).energy = 0.9


def _discarded_input():
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    y = BF.conv2d(x.clone(), w, padding=1, compress_rate=0.75)
    (gw,) = torch.autograd.grad(y.square().sum(), w, create_graph=True)
    torch.autograd.grad(gw.sum(), x)


def _energy_under_func():
    x, w = torch.randn(2, 2, 8, 8), torch.randn(3, 2, 3, 3)
    torch.func.grad(lambda w: BF.conv2d(x, w, padding=1, energy=0.9).sum())(w)


def _compiled_double_backward():
    m, x = _model()
    x.requires_grad_()
    y = torch.compile(m, backend="aot_eager")(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    gx.square().sum().backward()


def _mark_dynamic():
    torch._dynamo.reset()
    m, _ = _model()
    x = torch.randn(2, 2, 8, 8)  # (a size-1 dimension is not made dynamic)
    torch._dynamo.mark_dynamic(x, 0)
    torch.compile(m, backend="aot_eager")(x)


# (what, call, exception class as README names it, message fragment README quotes)
CASES = [
    ("3D transposed", _conv3d_input, "ValueError", "input must have 4 dimensions (N, C, H, W)"),
    (
        "3D energy",
        _conv3d_energy,
        "NotImplementedError",
        "energy-based compression is not supported for 3D convolutions",
    ),
    ("script", _script, "torch.jit.frontend.NotSupportedError", "Don't support conversion in"),
    ("trace", _trace, "torch.jit.TracingCheckError", "Tracing failed sanity checks!"),
    ("onnx", _onnx, "torch.onnx.errors.UnsupportedOperatorError", "unrecognized namespace"),
    ("forward AD", _forward_ad, "NotImplementedError", "forward-mode AD"),
    ("transposed energy", _transposed_energy, "ValueError", "energy selection does not apply"),
    ("energy under torch.func", _energy_under_func, "NotImplementedError", "energy selection"),
    ("discarded input", _discarded_input, "RuntimeError", "set_input_spectrum_saving('recompute')"),
    (
        "compiled double backward",
        _compiled_double_backward,
        "RuntimeError",
        "torch.compile with aot_autograd does not currently support double backward",
    ),
    (
        "mark_dynamic",
        _mark_dynamic,
        "torch.fx.experimental.symbolic_shapes.ConstraintViolationError",
        "specialized it to be a constant",
    ),
]


def _exception_class(name: str):
    obj = __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)
    if "." not in name:
        return obj[name]
    parts = name.split(".")
    value = __import__(parts[0])
    for p in parts[1:]:
        value = getattr(value, p)
    return value


@pytest.mark.parametrize("what,call,exc,fragment", CASES, ids=[c[0] for c in CASES])
def test_listed_errors_are_raised(what, call, exc, fragment):
    section = _limitations()
    assert f"`{exc}" in section, f"README's Limitations does not name {exc}"
    assert fragment in section, f"README's Limitations does not quote {fragment!r}"
    with pytest.raises(_exception_class(exc)) as info:
        call()
    assert fragment in str(info.value)


def test_what_works_instead():
    # check_trace=False traces, torch.export exports, convert converts Conv3d (both backends:
    # README no longer lists 3D layers as CPU-only).
    m, x = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, x, check_trace=False)
    torch.testing.assert_close(traced(x), m(x))
    exported = torch.export.export(m, (x,))
    torch.testing.assert_close(exported.module()(x), m(x))
    net = blfft.convert(tnn.Sequential(tnn.Conv3d(2, 2, 3)))
    assert type(net[0]) is blfft.nn.Conv3d
    assert "`torch.export.export(model, (x,))` works" in _limitations()
    assert "CPU backend only" not in _limitations()
