"""torch.compile of a model built from blfft modules (custom ops with fake impls + autograd)."""

import pytest
import torch
import torch.nn as tnn

import blfft
from helpers import Net, conv_backward_args
from helpers import train_step as _step

# torch's own compile stack uses APIs it has deprecated; those warnings are not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_compiled_model_matches_eager(backend):
    torch._dynamo.reset()
    model = Net()
    x = torch.randn(4, 3, 12, 12)
    compiled = _compiled_matches_eager(model, x, backend)
    # The report still sees the geometry of the compiled run.
    rep = blfft.compression_report(model)
    assert rep[0]["input_shape"] == (4, 3, 12, 12) and rep[0]["achieved_rate"] > 0.4
    # eval mode uses the inference rates (a recompile); inference needs no saved spectra.
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_model_follows_weight_spectrum_saving_mode():
    # The mode is part of the traced graph: switching it recompiles instead of reusing a graph
    # whose backward expects a spectrum that forward no longer keeps (or the other way round).
    torch._dynamo.reset()
    model = Net()
    x = torch.randn(4, 3, 12, 12)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    before = blfft.get_weight_spectrum_saving()
    try:
        results = {}
        for mode, dtype in [
            ("keep", None),
            ("recompute", None),
            ("auto", torch.bfloat16),
            ("keep", torch.bfloat16),
            ("keep", None),
        ]:
            blfft.set_weight_spectrum_saving(mode)
            blfft.set_saved_spectrum_dtype(dtype)
            blfft.set_input_spectrum_saving("recompute" if mode == "recompute" else "auto")
            results[mode] = _step(compiled, model, x)
            out_e, grads_e = _step(model, model, x)
            torch.testing.assert_close(results[mode][0], out_e, rtol=1e-4, atol=1e-5)
            for n in grads_e:
                torch.testing.assert_close(results[mode][1][n], grads_e[n], rtol=1e-4, atol=1e-5)
    finally:
        blfft.set_weight_spectrum_saving(before)
        blfft.set_saved_spectrum_dtype(None)
        blfft.set_input_spectrum_saving("auto")


def _compiled_matches_eager(model, x, backend, rtol=1e-4, atol=1e-5):
    """torch.compile(model, fullgraph=True): one training step gives eager's output and
    gradients. Returns the compiled model."""
    out_e, grads_e = _step(model, model, x)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    out_c, grads_c = _step(compiled, model, x)
    assert out_c.dtype == out_e.dtype
    torch.testing.assert_close(out_c, out_e, rtol=rtol, atol=atol)
    for n in grads_e:
        torch.testing.assert_close(grads_c[n], grads_e[n], rtol=rtol, atol=atol)
    return compiled


def test_ops_pass_opcheck():
    """torch.library.opcheck: schema, fake impl, autograd registration agree with the kernel."""
    x = torch.randn(2, 3, 8, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    args = (x, w, b, [1, 1], [1, 1], [1, 1], 1, 0.5, [], True, True)
    torch.library.opcheck(torch.ops.blfft.conv_forward.default, args)
    for extra in [("keep",), ("recompute",), ("keep", "bfloat16"), ("auto", "", "recompute")]:
        torch.library.opcheck(torch.ops.blfft.conv_forward.default, args + extra)
    g = torch.randn(2, 4, 8, 7, dtype=torch.float64)
    bargs = conv_backward_args(g, x, w)
    torch.library.opcheck(torch.ops.blfft.conv_backward.default, bargs)


def test_meta_tensors_give_shapes():
    x = torch.empty(2, 3, 9, 10, device="meta")
    w = torch.empty(5, 3, 3, 3, device="meta")
    y = blfft.functional.conv2d(x, w, stride=2, padding=1, compress_rate=0.5)
    assert y.device.type == "meta" and tuple(y.shape) == (2, 5, 5, 5)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_energy_mode_compiles_without_a_graph_break(backend):
    """Energy selection runs inside blfft::conv_forward_energy: fullgraph=True compiles, and the
    numbers, gradients and compression report equal eager mode's."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tnn.Sequential(
        blfft.nn.Conv2d(2, 4, 3, padding=1, energy=0.9),
        tnn.ReLU(),
        blfft.nn.Conv2d(4, 2, 3, energy=0.8),
    )
    x = torch.randn(2, 2, 10, 10).cumsum(-1)
    model(x)
    report_e = blfft.compression_report(model)
    compiled = _compiled_matches_eager(model, x, backend)
    report_c = blfft.compression_report(model)
    for key in ("limits", "kept"):
        assert [r[key] for r in report_c] == [r[key] for r in report_e], key
    for key in ("achieved_rate", "requested_rate", "energy_kept"):
        assert [r[key] for r in report_c] == pytest.approx([r[key] for r in report_e]), key
    assert 0 < report_c[0]["achieved_rate"] < 1 and report_c[0]["energy_kept"] >= 0.9
    # The choice follows the data: a rough input keeps more (no recompile needed).
    rough = torch.randn(2, 2, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(compiled(rough), model(rough), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cached_inference_under_compile():
    # WeightSpectrumCache.get runs eagerly (outside the graph) and still caches.
    torch._dynamo.reset()
    m = tnn.Sequential(
        blfft.nn.Conv2d(3, 8, 3, padding=1, compress_rate=0.5, cache_weight_spectrum=True),
        tnn.ReLU(),
        blfft.nn.Conv2d(8, 4, 3, padding=1, compress_rate=0.5, cache_weight_spectrum=True),
    ).eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        ref = m(x)
        compiled = torch.compile(m, backend="aot_eager")
        out, out2 = compiled(x), compiled(x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(out2, ref)
    cache = m[0]._blfft_weight_cache
    assert cache.misses == 1 and cache.hits >= 2


def test_import_does_not_load_dynamo():
    # torch.compiler.disable would import torch._dynamo (seconds) at `import blfft`; the eager-only
    # functions apply it on first use instead.
    import subprocess
    import sys

    code = "import sys, blfft; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_new_ops_pass_opcheck():
    """opcheck for the ops behind transposed convolutions, second derivatives and in-graph
    energy selection."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 4, 8, 7, dtype=torch.float64, requires_grad=True)
    bt = torch.randn(3, dtype=torch.float64, requires_grad=True)
    conf = ([1, 1], [1, 1], [1, 1], 1, 0.5, [])
    shapes = ([2, 3, 8, 7], [4, 3, 3, 3])
    torch.library.opcheck(torch.ops.blfft.conv_transpose.default, (g, w, None, bt) + shapes + conf)
    _, xs, _ = torch.ops.blfft.conv_forward(x.detach(), w.detach(), None, *conf, True, False)
    torch.library.opcheck(
        torch.ops.blfft.conv_forward_from_x_spectrum.default,
        (xs, w.detach(), [2, 3, 8, 7]) + conf,  # no autograd of its own (second-order pass)
    )
    xe = x.detach().cumsum(-1).requires_grad_()
    torch.library.opcheck(
        torch.ops.blfft.conv_forward_energy.default, (xe, w, b) + conf[:4] + (0.9,)
    )
    _, info = torch.ops.blfft.conv_forward_energy(xe.detach(), w.detach(), b, *conf[:4], 0.9)
    torch.library.opcheck(
        torch.ops.blfft.conv_backward_energy.default,
        (g.detach(), xe.detach(), w.detach(), info) + shapes + conf[:4] + (True, True, True),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_transposed_and_half_models_compile_fullgraph(dtype):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tnn.Sequential(
        blfft.nn.Conv2d(3, 8, 3, stride=2, padding=1, compress_rate=0.5),
        tnn.ReLU(),
        blfft.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, compress_rate=0.5),
    ).to(dtype)
    x = torch.randn(2, 3, 12, 12, dtype=dtype)
    assert model(x).shape == (2, 4, 12, 12)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    _compiled_matches_eager(model, x, "aot_eager", **tol)


@pytest.mark.parametrize("kind", ["conv", "energy", "transposed"])
def test_modules_compile_with_dynamic_true(kind):
    """torch.compile(dynamic=True) traces a module's float attributes (compress_rate, energy) as
    symbolic floats: the argument checks must not stop the trace (math.isfinite did)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    if kind == "transposed":
        model = blfft.nn.ConvTranspose2d(
            3, 4, 3, stride=2, padding=1, output_padding=1, compress_rate=0.5
        )
    else:
        knob = dict(energy=0.9) if kind == "energy" else dict(compress_rate=0.5)
        model = blfft.nn.Conv2d(3, 4, 3, stride=2, padding=1, **knob)
    compiled = torch.compile(model, backend="aot_eager", dynamic=True, fullgraph=True)
    for size in [(12, 12), (14, 10)]:
        x = torch.randn(2, 3, *size).cumsum(-1)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    # The value is still guarded on: a new one recompiles, it is not read as a stale constant.
    if kind == "energy":
        model.energy = 0.5
    else:
        model.compress_rate = 0.75
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
