"""The CPU core's staged energy search (src/energy.cpp, docs/design.md 1.7) against the whole
energy map: the same kept set for any shape, dtype, magnitude and fraction, fractions placed
exactly on a band's share of the energy included; the same report bit for bit whatever the calls
before it (the process-wide hints); the same refusal of inputs the map cannot hold.

The whole map's choice is made here from ``_core.energy_map`` (every bin's energy, independent
of the staged search) by the rule of 1.7: the first band of the rate family, from the largest
compression down, holding at least E of the total."""

import math
import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from blfft import _core, _ops  # noqa: E402
from blfft._backends import dl  # noqa: E402
from blfft._geometry import geometry  # noqa: E402
from reference import band_limit  # noqa: E402

_EXAMPLES = int(os.environ.get("BLFFT_HYPOTHESIS_EXAMPLES", "0")) or 120
_SETTINGS = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)


def _family(lh, lw, nd):
    """Band limits (i_h, i_w) of the rate family, from the largest compression down."""
    rates = {0.0}
    for length in [lw] if nd == 1 else [lh, lw]:
        half = length // 2 + 1
        rates.update(1.0 - ((j / half) if nd == 1 else (j / half) ** 2) for j in range(1, half))
    return [
        (1 if nd == 1 else band_limit(lh, r, 2), band_limit(lw, r, nd))
        for r in sorted(rates, reverse=True)
    ]


def _layer(x, padding):
    nd = x.dim() - 2
    w_shape = (2, x.shape[1]) + (3,) * nd
    return w_shape, [1] * nd, [padding] * nd, [1] * nd


def _band_shares(x, padding):
    """(family, kept energy of each band, total) from the whole map, summed in grid order."""
    w_shape, stride, pad, dil = _layer(x, padding)
    p, _, g = geometry(x.shape, w_shape, stride, pad, dil, 1, 0.0, ())
    lh, lw = (g.grid[0], g.grid[1]) if x.dim() == 4 else (1, g.grid[-1])
    bins = lw // 2 + 1
    e = torch.from_dlpack(_core.energy_map(p, dl(x))).reshape(lh, bins).tolist()

    def band(i_h, i_w):  # one addition after another, in grid order (as blfft does: ties exact)
        s = 0.0
        for r in range(lh):
            if min(r, lh - r) <= i_h - 1:
                for v in e[r][:i_w]:
                    s += v
        return s

    family = _family(lh, lw, x.dim() - 2)
    return family, [band(*b) for b in family], band(lh, bins)


def _whole_map_choice(x, padding, fraction):
    family, kept, total = _band_shares(x, padding)
    if not math.isfinite(total):
        return None  # refused
    return next(b for b, k in zip(family, kept, strict=True) if k >= fraction * total)


def _staged(x, padding, fraction):
    """(limits, rate, energy_kept) of the core's select_by_energy, or None where it refuses."""
    w_shape, stride, pad, dil = _layer(x, padding)
    try:
        band, sel = _ops._select_band(x, w_shape, stride, pad, dil, 1, fraction)
    except ValueError:
        return None
    return tuple(band), sel.rate, sel.energy_kept


@st.composite
def inputs(draw):
    nd = draw(st.sampled_from([1, 2]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(3, 19)) for _ in range(nd))
    kind = draw(st.sampled_from(["noise", "smooth", "constant", "zero", "one_frequency"]))
    scale = draw(st.sampled_from([1.0, 1e-30, 1e-41, 1e30, 1e-150, 1e150, 1e155]))
    if dtype == torch.float32 and abs(math.log10(scale)) > 40:
        scale = 1e-41 if scale < 1 else 1e30  # (subnormal float32, not zero)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x = torch.randn((n, c) + spatial, generator=gen, dtype=torch.float64)
    if kind == "smooth":
        x = x.cumsum(-1) if nd == 1 else x.cumsum(-1).cumsum(-2)
    elif kind == "constant":
        x = torch.full_like(x, draw(st.sampled_from([1.0, -3.0])))
    elif kind == "zero":
        x = torch.zeros_like(x)
    elif kind == "one_frequency":  # all energy in one band: shares of exactly 0 and 1
        pos = torch.arange(spatial[-1], dtype=torch.float64)
        x = torch.cos(2 * math.pi * draw(st.integers(0, 3)) * pos / spatial[-1]).expand_as(x)
    return (x * scale).to(dtype).contiguous(), draw(st.integers(0, 2))


@_SETTINGS
@given(
    data=inputs(),
    fraction=st.sampled_from([1e-9, 0.3, 0.5, 0.9, 0.99, 0.999, 1.0]),
    on_band=st.integers(0, 40),
)
def test_staged_search_chooses_what_the_whole_map_chooses(data, fraction, on_band):
    x, padding = data
    family, kept, total = _band_shares(x, padding)
    if on_band < len(family) and total > 0 and math.isfinite(total):
        fraction = min(1.0, max(1e-12, kept[on_band] / total))  # exactly a band's share
    want = _whole_map_choice(x, padding, fraction)
    for _ in range(2):  # the second call starts where the first landed
        got = _staged(x, padding, fraction)
        assert (got is None) == (want is None)
        if got is not None:
            assert got[0] == want
            tol = 1e-4 if x.dtype == torch.float32 else 1e-10
            assert got[2] >= min(fraction, 1.0) - tol


@_SETTINGS
@given(data=inputs(), others=st.lists(inputs(), min_size=2, max_size=3), fraction=st.floats(0.05, 1))
def test_report_independent_of_the_calls_before(data, others, fraction):
    x, padding = data
    first = _staged(x, padding, fraction)
    for other, _ in others:  # another input of the same layer moves the hint
        other = torch.broadcast_to(other.flatten()[:1], x.shape).to(x.dtype) + x.flip(-1)
        _staged(other.contiguous(), padding, fraction)
        assert _staged(x, padding, fraction) == first  # bit for bit, energy_kept included


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_refused_with_the_documented_error(dtype, bad):
    x = torch.randn(2, 3, 9, 9, dtype=dtype)
    for _ in range(2):  # with and without a hint
        _staged(torch.randn(2, 3, 9, 9, dtype=dtype), 1, 0.9)
        y = x.clone()
        y[1, 2, 4, 4] = bad
        with pytest.raises(ValueError, match="needs a finite input"):
            _ops._select_band(y, (2, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1, 0.9)


def test_float32_spectrum_overflow_refused():
    # Review of #15: finite float32 values whose spectrum overflows float32: the whole map refuses;
    # the staged search chose the largest compression from infinite band energies.
    x = torch.randn(2, 3, 12, 12) * 3e37
    assert _whole_map_choice(x, 1, 0.5) is None
    with pytest.raises(ValueError, match="finite input"):
        _ops._select_band(x, (2, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1, 0.5)


def test_output_that_cannot_exist_refused_before_selection():
    # Review of #15: with the NaN check moved after the core, nothing refused an expanded batch
    # of 2**51 samples before the selection read all of them (minutes; the fuzz regression
    # fuzz_energy_huge_expanded_batch timed out). The output cap is checked first, as forward
    # would, with forward's error.
    import time

    import blfft.functional as BF

    x = torch.zeros(1, 1, 1).expand(2**51, 1, 1)
    start = time.perf_counter()
    with pytest.raises(MemoryError, match="output would take"):
        BF.conv1d(x, torch.randn(1, 1, 1), energy=0.9)
    assert time.perf_counter() - start < 5
