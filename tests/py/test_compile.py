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
    out_e, grads_e = _step(model, model, x)
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    out_c, grads_c = _step(compiled, model, x)
    torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
    for n in grads_e:
        torch.testing.assert_close(grads_c[n], grads_e[n], rtol=1e-4, atol=1e-5)
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


# torch 2.13's dynamo warns about reading .grad of a non-leaf tensor when it resumes after any
# graph break with such a tensor alive (plain torch code does the same); not ours.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_energy_mode_compiles_with_a_graph_break():
    """Energy selection is data-dependent: it runs eagerly between compiled graphs."""
    torch._dynamo.reset()
    model = tnn.Sequential(
        blfft.nn.Conv2d(2, 4, 3, padding=1, energy=0.9), tnn.ReLU(), blfft.nn.Conv2d(4, 2, 3)
    )
    x = torch.randn(2, 2, 10, 10).cumsum(-1)
    ref = model(x)
    out = torch.compile(model, backend="aot_eager")(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert model[0].weight.grad is not None


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
