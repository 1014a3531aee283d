"""What autograd keeps for backward: compressed spectra instead of full copies where smaller."""

import pytest
import torch

import blfft
import blfft.functional as BF
from blfft import _ops, _settings


def _saved(fn):
    """Runs fn() and returns the tensors autograd saved for backward, and fn's output."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


def _nbytes(ts):
    return sum(t.numel() * t.element_size() for t in ts)


@pytest.fixture
def keep_weight_spectra():
    """Forward keeps weight spectra (as with blfft.set_weight_spectrum_saving("keep"))."""
    before = blfft.get_weight_spectrum_saving()
    blfft.set_weight_spectrum_saving("keep")
    yield
    blfft.set_weight_spectrum_saving(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_batch_dependent_saved_bytes_are_smaller_than_input_at_rate_075(dtype, keep_weight_spectra):
    c, f, hw = 8, 8, 32
    w = torch.randn(f, c, 3, 3, dtype=dtype, requires_grad=True)
    b = torch.randn(f, dtype=dtype, requires_grad=True)
    per_batch = {}
    for n in (2, 4):
        # An intermediate activation (not a leaf: a leaf input is kept by reference for double
        # backward, at no cost, see test_leaf_input_is_kept_by_reference).
        x = torch.randn(n, c, hw, hw, dtype=dtype, requires_grad=True).clone()
        y, saved = _saved(lambda x=x: BF.conv2d(x, w, b, padding=1, compress_rate=0.75))
        _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.75)
        # Weight spectra are counted separately: they do not grow with the batch.
        w_spec = [t for t in saved if t.numel() == g.w_spectrum_size]
        assert len(w_spec) == 1
        rest = [t for t in saved if t is not w_spec[0]]
        # Nothing saved shares the input's memory: the input itself is not kept.
        assert all(t.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for t in rest)
        per_batch[n] = (_nbytes(rest), x.numel() * x.element_size())
        assert _nbytes(rest) < x.numel() * x.element_size()
        y.sum().backward()  # and backward works from what was kept
    growth = per_batch[4][0] - per_batch[2][0]
    input_growth = per_batch[4][1] - per_batch[2][1]
    assert 0 < growth < 0.5 * input_growth


def test_leaf_input_is_kept_by_reference():
    # A leaf input that requires grad (a gradient penalty's input, gradcheck's) is held by its
    # creator anyway; forward keeps a reference to it beside its spectrum, so that a create_graph
    # backward can differentiate the weight gradient toward it (docs/design.md 1.6).
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.75)
    assert g.x_spectrum_size < g.input_size
    _, saved = _saved(lambda: BF.conv2d(x, w, padding=1, compress_rate=0.75))
    assert any(t is x for t in saved)
    assert any(t.numel() == g.x_spectrum_size for t in saved)


def test_an_activation_whose_spectrum_is_kept_is_freed():
    # An intermediate activation (input and weight both require grad): forward keeps its
    # spectrum, not it, nor anything sharing its storage (the link that lets a second-order
    # backward tell "toward this input" apart is an empty tensor of its own).
    from torch.multiprocessing.reductions import StorageWeakRef

    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    h = x * 2
    storage = StorageWeakRef(h.untyped_storage())
    y = BF.conv2d(h, w, padding=1, compress_rate=0.75)
    del h
    assert storage.expired()
    y.sum().backward()
    assert x.grad is not None and w.grad is not None


def test_input_is_kept_when_its_spectrum_is_larger():
    # Tiny map, no compression: the compressed spectrum (2 * kept per channel) exceeds H * W.
    x = torch.randn(4, 8, 4, 4, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.0)
    assert g.x_spectrum_size > g.input_size
    y, saved = _saved(lambda: BF.conv2d(x, w, padding=1))
    assert any(t is x or t.data_ptr() == x.data_ptr() for t in saved)
    assert not any(t.numel() == g.x_spectrum_size for t in saved)
    y.square().sum().backward()
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    torch.nn.functional.conv2d(xr, wr, padding=1).square().sum().backward()
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-4)


def test_only_what_the_requested_gradients_need_is_saved():
    x = torch.randn(2, 4, 16, 16)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    # A first layer: the input needs no gradient, so no weight spectrum is kept.
    _, saved = _saved(lambda: BF.conv2d(x, w, padding=1, compress_rate=0.5))
    _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.5)
    assert [t.numel() for t in saved] == [g.x_spectrum_size]
    # A frozen layer: only the weight spectrum, or the weight to recompute it from (for the input
    # gradient).
    xg = x.clone().requires_grad_()
    _, saved = _saved(lambda: BF.conv2d(xg, w.detach(), padding=1, compress_rate=0.5))
    expected = g.w_spectrum_size if _settings.keep_w_spectrum(g) else w.numel()
    assert [t.numel() for t in saved] == [expected]
    with torch.no_grad():
        _, saved = _saved(lambda: BF.conv2d(xg, w, padding=1, compress_rate=0.5))
    assert saved == []


def _weight_spectra(saved, g):
    return [t for t in saved if t.numel() == g.w_spectrum_size and t.dim() == 1]


@pytest.mark.parametrize("mode", ["auto", "keep", "recompute"])
@pytest.mark.parametrize(
    "n,c,f,hw,rate",
    [
        (2, 8, 8, 32, 0.75),  # small batch: the weight spectrum outweighs the input
        (64, 4, 4, 32, 0.75),  # large batch: it fits in what the input spectrum saves
    ],
)
def test_weight_spectrum_saving_modes(mode, n, c, f, hw, rate):
    torch.manual_seed(0)
    # An intermediate activation: a leaf input would also be kept by reference (at no cost).
    x = torch.randn(n, c, hw, hw, dtype=torch.float64, requires_grad=True).clone()
    w = torch.randn(f, c, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(f, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(n, f, hw, hw, dtype=torch.float64)
    _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, rate)
    x_held = g.x_spectrum_size if g.x_spectrum_size <= g.input_size else g.input_size
    within_torch = x_held + g.w_spectrum_size <= g.input_size + g.weight_size
    expect_kept = {"auto": within_torch, "keep": True, "recompute": False}[mode]

    before = blfft.get_weight_spectrum_saving()
    try:
        blfft.set_weight_spectrum_saving("keep")
        ref = BF.conv2d(x, w, b, padding=1, compress_rate=rate)
        ref_grads = torch.autograd.grad(ref, (x, w, b), gy)
        blfft.set_weight_spectrum_saving(mode)
        assert blfft.get_weight_spectrum_saving() == mode
        y, saved = _saved(lambda: BF.conv2d(x, w, b, padding=1, compress_rate=rate))
        grads = torch.autograd.grad(y, (x, w, b), gy)
    finally:
        blfft.set_weight_spectrum_saving(before)
    assert len(_weight_spectra(saved, g)) == (1 if expect_kept else 0)
    if not expect_kept:  # the weight itself is kept, to recompute its spectrum in backward
        assert any(t is w for t in saved)
    if mode == "auto":  # never more than torch's convolution holds (the input and the weight)
        assert _nbytes(saved) <= (g.input_size + g.weight_size) * 8
    # Recomputing gives the same numbers as keeping (same transform, same inputs).
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_auto_rule_takes_both_branches():
    # The two cases above really differ under "auto" (else the test above would not test it).
    decisions = []
    for n, c, f, hw, rate in [(2, 8, 8, 32, 0.75), (64, 4, 4, 32, 0.75)]:
        _, _, g = _ops.geometry((n, c, hw, hw), (f, c, 3, 3), (1, 1), (1, 1), (1, 1), 1, rate)
        decisions.append(_settings.keep_w_spectrum(g))
    assert decisions == [False, True]


def test_weight_spectrum_saving_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'keep', 'recompute'"):
        blfft.set_weight_spectrum_saving("sometimes")
    assert blfft.get_weight_spectrum_saving() == "auto"


@pytest.fixture
def bfloat16_spectra():
    blfft.set_saved_spectrum_dtype(torch.bfloat16)
    yield
    blfft.set_saved_spectrum_dtype(None)


@pytest.mark.parametrize("hw", [4, 8, 16])
def test_bfloat16_saved_spectra_halve_what_backward_holds(hw, bfloat16_spectra):
    # Small maps at rate 0.5: the full-precision input spectrum is 0.7-0.9x the input (the padded
    # grid has more bins than the map has pixels); stored in bfloat16 it is under 0.6x.
    torch.manual_seed(1)
    c = f = 16
    w = torch.randn(f, c, 3, 3, requires_grad=True)
    held = {}
    blfft.set_weight_spectrum_saving("recompute")  # only the batch-dependent part here
    for n in (4, 8):
        x = torch.randn(n, c, hw, hw, requires_grad=True).clone()  # an intermediate activation
        _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.5)
        y, saved = _saved(lambda x=x: BF.conv2d(x, w, padding=1, compress_rate=0.5))
        spectra = [t for t in saved if t.dim() == 1]
        assert spectra and all(t.dtype == torch.bfloat16 for t in spectra)
        assert not any(t is x for t in saved)
        held[n] = (_nbytes(saved), x.numel() * x.element_size())
        y.sum().backward()
    blfft.set_weight_spectrum_saving("auto")
    growth = held[8][0] - held[4][0]
    input_growth = held[8][1] - held[4][1]
    assert 0 < growth <= 0.6 * input_growth


def test_bfloat16_saved_spectra_gradients_are_close(bfloat16_spectra):
    torch.manual_seed(2)
    x = torch.randn(4, 8, 12, 12, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    gy = torch.randn(4, 8, 12, 12)
    y16 = BF.conv2d(x, w, padding=1, compress_rate=0.5)
    g16 = torch.autograd.grad(y16, (x, w), gy)
    blfft.set_saved_spectrum_dtype(None)
    y32 = BF.conv2d(x, w, padding=1, compress_rate=0.5)
    g32 = torch.autograd.grad(y32, (x, w), gy)
    torch.testing.assert_close(y16, y32, rtol=0, atol=0)  # forward is unaffected
    for a, b in zip(g16, g32):
        rel = (a - b).norm() / b.norm()
        assert 0 < rel < 1e-2  # rounded (so not identical), but within bfloat16's precision


def test_saved_spectrum_dtype_rejects_other_dtypes():
    with pytest.raises(ValueError, match="dtype must be None or torch.bfloat16"):
        blfft.set_saved_spectrum_dtype(torch.float16)
    assert blfft.get_saved_spectrum_dtype() is None


def test_large_1d_layer_mixes_from_the_weight_taps():
    # The FCN's 256->128 k3 layer: its weight spectrum (~33 MB in float32) is never made; the
    # core mixes from the taps (plan_options::mixing automatic). Same numbers as with kept
    # spectra, and nothing weight-spectrum-sized is held.
    torch.manual_seed(3)
    x = torch.randn(16, 256, 500, dtype=torch.float64, requires_grad=True)
    w = torch.randn(128, 256, 3, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(16, 128, 500, dtype=torch.float64)
    _, _, g = _ops.geometry(x.shape, w.shape, (1,), (1,), (1,), 1, 0.5)
    assert not _settings.keep_w_spectrum(g)
    y, saved = _saved(lambda: BF.conv1d(x, w, padding=1, compress_rate=0.5))
    assert not _weight_spectra(saved, g)
    grads = torch.autograd.grad(y, (x, w), gy)
    before = blfft.get_weight_spectrum_saving()
    blfft.set_weight_spectrum_saving("keep")
    try:
        ref = BF.conv1d(x, w, padding=1, compress_rate=0.5)
        ref_grads = torch.autograd.grad(ref, (x, w), gy)
    finally:
        blfft.set_weight_spectrum_saving(before)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("mode", ["auto", "keep", "recompute"])
def test_input_spectrum_saving_modes(mode):
    torch.manual_seed(4)
    # An intermediate activation (a leaf input is also kept by reference, at no cost).
    x = torch.randn(4, 8, 16, 16, dtype=torch.float64, requires_grad=True).clone()
    w = torch.randn(8, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(4, 8, 16, 16, dtype=torch.float64)
    _, _, g = _ops.geometry(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, 0.5)
    assert g.x_spectrum_size < g.input_size  # "auto" keeps the spectrum here
    ref = BF.conv2d(x, w, padding=1, compress_rate=0.5)
    ref_grads = torch.autograd.grad(ref, (x, w), gy)
    before = blfft.get_input_spectrum_saving()
    try:
        blfft.set_input_spectrum_saving(mode)
        assert blfft.get_input_spectrum_saving() == mode
        y, saved = _saved(lambda: BF.conv2d(x, w, padding=1, compress_rate=0.5))
        grads = torch.autograd.grad(y, (x, w), gy)
    finally:
        blfft.set_input_spectrum_saving(before)
    kept_spectrum = any(t.dim() == 1 and t.numel() == g.x_spectrum_size for t in saved)
    kept_input = any(t is x for t in saved)
    assert kept_spectrum == (mode != "recompute")
    assert kept_input == (mode == "recompute")
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_input_spectrum_saving_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'keep', 'recompute'"):
        blfft.set_input_spectrum_saving("never")
    assert blfft.get_input_spectrum_saving() == "auto"
