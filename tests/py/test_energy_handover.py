"""Energy mode at the cost of the fixed rate (issue #15): on the CPU the selection transforms the
input with the forward's own plan and hands the spectrum at the chosen kept set to the forward,
which does not transform the input again. The oracle is the fixed-rate call at the rate the
selection reports: output and gradients must be its bits, in default and deterministic mode,
float32 and float64, 1D and 2D, whether the band the staged search transformed first is the
chosen one (the layer's last call chose it) or not (the last call landed elsewhere)."""

import pytest
import torch
import torch.nn.functional as F

import blfft
import blfft.functional as BF
from blfft import _core, _ops


def _smooth(shape, gen):
    """Low frequencies dominate (bicubic-upsampled coarse noise plus 5% noise): a high rate."""
    n, c, *spatial = shape
    if len(spatial) == 1:
        coarse = torch.randn(n, c, 1, max(2, spatial[0] // 4), generator=gen, dtype=torch.float64)
        up = F.interpolate(coarse, size=(1, spatial[0]), mode="bicubic")[:, :, 0]
    else:
        coarse = torch.randn(n, c, spatial[0] // 4, spatial[1] // 4, generator=gen)
        up = F.interpolate(coarse.double(), size=tuple(spatial), mode="bicubic")
    return up + 0.05 * torch.randn(shape, generator=gen, dtype=torch.float64)


def _call(x, w, b, **kw):
    fn = BF.conv1d if x.dim() == 3 else BF.conv2d
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True)
    y = fn(x, w, b, 1, 1, **kw)
    y.backward(torch.cos(torch.arange(y.numel(), dtype=y.dtype)).reshape(y.shape))
    return y.detach(), x.grad, w.grad, b.grad


def _count_transforms(monkeypatch):
    """Counts the core's forwards that transform x (forward) and those that take a handed-over
    spectrum (forward_with_input_spectrum)."""
    calls = {"forward": 0, "forward_with_input_spectrum": 0}
    for name in calls:
        real = getattr(_core, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(_core, name, counted)
    return calls


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 3, 20, 18), (3, 4, 64)])
def test_energy_call_is_the_fixed_rate_call_bit_for_bit(shape, dtype, deterministic, monkeypatch):
    gen = torch.Generator().manual_seed(7)
    smooth = _smooth(shape, gen).to(dtype)
    noise = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    k = (3,) * (len(shape) - 2)
    w = torch.randn((5, shape[1]) + k, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(5, generator=gen, dtype=torch.float64).to(dtype)
    before = blfft.get_deterministic()
    blfft.set_deterministic(deterministic)
    try:
        # Smooth and broadband inputs alternate: each call's staged search starts at the band the
        # call before chose, which is the chosen band on a repeat and not after a switch.
        bands = []
        for x, energy in [(smooth, 0.9), (smooth, 0.9), (noise, 0.99), (smooth, 0.9),
                          (noise, 0.99), (noise, 0.99), (smooth, 0.99)]:
            calls = _count_transforms(monkeypatch)
            got = _call(x, w, b, energy=energy)
            assert calls == {"forward": 0, "forward_with_input_spectrum": 1}
            monkeypatch.undo()
            nd = x.dim() - 2
            band, sel = _ops.select_band(x, w.shape, [1] * nd, [1] * nd, [1] * nd, 1, energy)
            bands.append(tuple(band))
            want = _call(x, w, b, compress_rate=float(sel.rate))
            for g, t, what in zip(got, want, ("output", "grad x", "grad w", "grad b")):
                assert torch.equal(g, t), f"{what} differs from the fixed-rate call"
        assert len(set(bands)) >= 2  # the calls did switch bands
    finally:
        blfft.set_deterministic(before)


def test_kept_spectrum_is_exactly_the_chosen_sets():
    # What backward keeps is the chosen set's spectrum, in a buffer of its size (the core asks
    # Python for a buffer per band it transforms): no more than the fixed-rate call holds.
    gen = torch.Generator().manual_seed(3)
    x = _smooth((4, 8, 32, 32), gen).float().requires_grad_(True)
    w = torch.randn(8, 8, 3, 3, generator=gen).requires_grad_(True)
    y = BF.conv2d(x, w, None, 1, 1, energy=0.9)
    band = _ops.select_band(x.detach(), w.shape, [1, 1], [1, 1], [1, 1], 1, 0.9)[0]
    g = _ops.geometry(x.shape, w.shape, [1, 1], [1, 1], [1, 1], 1, 0.0, band)[2]
    xs = y.grad_fn.saved_tensors[1]  # (x, its spectrum, weight, its spectrum)
    assert xs is not None and xs.numel() == g.x_spectrum_size  # kept at this rate
    assert xs.untyped_storage().nbytes() == g.x_spectrum_size * 4


def test_band_beyond_the_buffer_cap_falls_back_exactly(monkeypatch):
    # The layer's last call chose the whole grid (broadband input), so the search starts there;
    # with the buffer cap below the whole grid's spectrum that buffer is refused, the selection
    # runs without hand-over and the forward transforms x itself: the same result.
    gen = torch.Generator().manual_seed(5)
    shape = (128, 16, 32, 32)  # the whole grid's spectrum (10 MB) beyond an 8 MB map chunk
    smooth = _smooth(shape, gen).float()
    noise = torch.randn(shape, generator=gen)
    w = torch.randn(2, 16, 3, 3, generator=gen)
    b = torch.zeros(2)
    want = _call(smooth, w, b, energy=0.95)
    g = _ops.geometry(shape, w.shape, [1, 1], [1, 1], [1, 1], 1, 0.0, ())[2]
    before = blfft.get_max_buffer_size()
    _call(noise, w, b, energy=0.95)  # the hint: the whole grid
    blfft.set_max_buffer_size(4 * g.x_spectrum_size - 1)  # (float32) the whole grid's, less 1
    calls = _count_transforms(monkeypatch)
    try:
        got = _call(smooth, w, b, energy=0.95)
    finally:
        blfft.set_max_buffer_size(before)
    assert calls == {"forward": 1, "forward_with_input_spectrum": 0}
    for g, t in zip(got, want):
        assert torch.equal(g, t)


@pytest.mark.parametrize("saved_dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("mode", ["keep", "auto"])
def test_kept_whole_grid_spectrum_and_second_order(mode, saved_dtype):
    # The chosen set is the whole grid (rate 0), the buffer itself then; kept for backward
    # ("keep"), it is saved as a view (autograd.Function refuses to save an input returned as it
    # is: this raised). Double backward through a non-leaf input as the fixed-rate call's.
    gen = torch.Generator().manual_seed(11)
    x0 = torch.randn(4, 3, 12, 12, generator=gen)
    w0 = torch.randn(5, 3, 3, 3, generator=gen)
    modes = (blfft.get_input_spectrum_saving(), blfft.get_saved_spectrum_dtype())
    blfft.set_input_spectrum_saving(mode)
    blfft.set_saved_spectrum_dtype(saved_dtype)
    try:
        res = []
        for kw in [dict(energy=0.99), dict(compress_rate=0.0)]:
            x = x0.clone().requires_grad_(True)
            w = w0.clone().requires_grad_(True)
            y = BF.conv2d(x * 2, w, None, 1, 1, **kw)
            gx, gw = torch.autograd.grad(y.square().sum(), (x, w), create_graph=True)
            res.append((y, gx, gw, torch.autograd.grad(gw.square().sum(), w)[0]))
        band = _ops.select_band(x0, w0.shape, [1, 1], [1, 1], [1, 1], 1, 0.99)[0]
        assert band == [8, 8]  # the whole 14 x 14 grid
        for a, b in zip(*res):
            assert torch.equal(a, b)
    finally:
        blfft.set_input_spectrum_saving(modes[0])
        blfft.set_saved_spectrum_dtype(modes[1])


@pytest.mark.parametrize("layout", ["channels_last", "row_slice", "every_other_column"])
def test_strided_input_selects_and_convolves_as_its_contiguous_copy(layout):
    # Parseval's pass reads a contiguous image as one span, rows otherwise, elements at a stride
    # last: each layout against its contiguous copy (same choice, energy_kept to rounding, and
    # the energy call's output bit for bit).
    gen = torch.Generator().manual_seed(13)
    base = _smooth((3, 4, 24, 40), gen).float()
    x = {
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "row_slice": base[:, :, :, 4:36],
        "every_other_column": base[:, :, :, ::2],
    }[layout]
    w = torch.randn(2, 4, 3, 3, generator=gen)
    got = _ops.select_band(x, w.shape, [1, 1], [1, 1], [1, 1], 1, 0.9)
    want = _ops.select_band(x.contiguous(), w.shape, [1, 1], [1, 1], [1, 1], 1, 0.9)
    assert got[0] == want[0]
    assert got[1].energy_kept == pytest.approx(want[1].energy_kept, rel=1e-5)
    y = BF.conv2d(x, w, None, 1, 1, energy=0.9)
    assert torch.equal(y, BF.conv2d(x.contiguous(), w, None, 1, 1, energy=0.9))
