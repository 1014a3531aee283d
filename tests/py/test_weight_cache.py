"""The weight-spectrum cache of ``cache_weight_spectrum=True`` layers (blfft._weight_cache): one
weight transform per weight update, in evaluation and in training (forward and backward share the
spectrum), results bitwise those of the uncached layer, invalidated by every way of changing the
weight or the call, nothing held after ``blfft.clear_caches()``."""

import pytest
import torch

import blfft
from blfft import _ops

F64 = torch.float64


def _pair(cls=blfft.nn.Conv2d, *args, device="cpu", dtype=F64, **kw):
    """A caching layer and an uncached one with the same parameters."""
    torch.manual_seed(0)
    m = cls(*args, cache_weight_spectrum=True, device=device, dtype=dtype, **kw)
    ref = cls(*args, device=device, dtype=dtype, **kw)
    ref.load_state_dict(m.state_dict())
    return m, ref


def _grads(layer, x, g):
    y = layer(x)
    return (y,) + torch.autograd.grad(y, (x, layer.weight, layer.bias), g)


def _count(m):
    c = m._blfft_weight_cache
    return c.misses, c.hits


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_training_shares_one_spectrum_per_step_bitwise(dtype):
    m, ref = _pair(blfft.nn.Conv2d, 3, 5, 3, padding=1, compress_rate=0.5, dtype=dtype)
    x = torch.randn(4, 3, 10, 10, dtype=dtype, requires_grad=True)
    g = torch.randn(4, 5, 10, 10, dtype=dtype)
    for got, want in zip(_grads(m, x, g), _grads(ref, x, g), strict=True):
        assert torch.equal(got, want)  # the same spectrum, the same products: bit for bit
    assert _count(m) == (1, 0)
    # Microbatches with the same weight (gradient accumulation) and evaluation reuse it.
    for n in (2, 7):
        xb = torch.randn(n, 3, 10, 10, dtype=dtype, requires_grad=True)
        gb = torch.randn(n, 5, 10, 10, dtype=dtype)
        for got, want in zip(_grads(m, xb, gb), _grads(ref, xb, gb), strict=True):
            assert torch.equal(got, want)
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
    assert _count(m) == (1, 3)


def test_training_matches_the_dense_oracle_and_double_backward():
    from reference import dense_conv

    m, _ = _pair(blfft.nn.Conv2d, 2, 3, 3, padding=1, compress_rate=0.4)
    x = torch.randn(2, 2, 9, 9, dtype=F64, requires_grad=True)
    g = torch.randn(2, 3, 9, 9, dtype=F64)
    w, b = m.weight.detach().requires_grad_(), m.bias.detach().requires_grad_()
    want = dense_conv(x, w, b, padding=1, rate=0.4)
    want_grads = torch.autograd.grad(want, (x, w, b), g)
    got = _grads(m, x, g)
    for a, e in zip(got, (want,) + want_grads, strict=True):
        assert (a - e).abs().max() <= 1e-10 * e.abs().max()
    # A gradient penalty (create_graph) goes through the weight itself, as without the cache.
    gw = torch.autograd.grad(m(x).square().sum(), m.weight, create_graph=True)[0]
    gw.square().sum().backward()
    assert m.weight.grad is not None and torch.isfinite(m.weight.grad).all()


def test_every_weight_write_invalidates():
    m, ref = _pair(blfft.nn.Conv2d, 3, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 3, 8, 8, dtype=F64, requires_grad=True)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def check(expected_misses):
        ref.load_state_dict(m.state_dict())
        with torch.no_grad():
            assert torch.equal(m(x), ref(x))
        y = m(x)
        y.sum().backward()
        assert torch.equal(y, ref(x))
        assert m._blfft_weight_cache.misses == expected_misses

    check(1)
    opt.step()  # an optimizer step (in place)
    check(2)
    with torch.no_grad():
        m.weight.mul_(1.5)  # an in-place write
    check(3)
    m.weight.data.add_(0.25)  # through .data: the version counter does not move
    check(4)
    m.weight.data = m.weight.data.clone() * 0.5  # a new tensor
    check(5)
    m.weight = torch.nn.Parameter(m.weight.detach().clone())  # a new parameter, same values
    check(5)  # the same values: the spectrum is still right


def test_shape_rate_dtype_changes_invalidate():
    m, ref = _pair(blfft.nn.Conv2d, 3, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 3, 8, 8, dtype=F64)

    def same(inp):
        with torch.no_grad():
            assert torch.equal(m(inp), ref(inp))

    same(x)
    same(x[:1])  # another batch: the same spectrum
    assert _count(m) == (1, 1)
    same(x[:, :, :7])  # another input size
    assert _count(m) == (2, 1)
    m.compress_rate = ref.compress_rate = 0.25  # another kept set
    same(x)
    assert _count(m) == (3, 1)
    m.float()
    ref.float()
    same(x.float())  # another dtype
    assert _count(m) == (4, 1)


def test_clear_caches_frees_the_spectrum_and_pickling_drops_it():
    import pickle

    m, _ = _pair(blfft.nn.Conv2d, 3, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 3, 8, 8, dtype=F64, requires_grad=True)
    m(x).sum().backward()
    cache = m._blfft_weight_cache
    assert cache.nbytes > 0
    blfft.clear_caches()
    assert cache.nbytes == 0
    assert pickle.loads(pickle.dumps(m))._blfft_weight_cache.nbytes == 0
    m(x).sum().backward()  # rebuilt on the next call
    assert cache.misses == 2 and cache.nbytes > 0


def test_paths_that_do_not_use_it_in_training():
    # 1D layer whose CPU plan mixes from the weight's taps (few taps, large spectrum): faster
    # without a spectrum, so training does not cache one.
    fcn, _ = _pair(blfft.nn.Conv1d, 256, 128, 3, padding=1, compress_rate=0.5, dtype=torch.float32)
    x = torch.randn(16, 256, 500, requires_grad=True)
    assert not fcn._blfft_weight_cache.serves_training(x, fcn.weight, ([1], [1], [1], 1, 0.5, []))
    fcn(x).sum().backward()
    assert _count(fcn) == (0, 0)
    small, _ = _pair(blfft.nn.Conv1d, 2, 3, 3, padding=1, compress_rate=0.5)
    xs = torch.randn(2, 2, 20, dtype=F64, requires_grad=True)
    small(xs).sum().backward()
    assert _count(small) == (1, 0)
    # Under autocast (bfloat16 on the CPU) the ordinary path runs.
    m, _ = _pair(blfft.nn.Conv2d, 3, 4, 3, padding=1, compress_rate=0.5, dtype=torch.float32)
    xa = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m(xa).float().sum().backward()
    assert _count(m) == (0, 0)
    # Under torch.func transforms neither path runs.
    params = dict(m.named_parameters())
    torch.func.grad(lambda p: torch.func.functional_call(m, p, (xa,)).sum())(params)
    assert _count(m) == (0, 0)


@pytest.fixture
def _saving_modes():
    """Restores the spectrum-saving settings a test changes."""
    saved = (
        blfft.get_weight_spectrum_saving(),
        blfft.get_input_spectrum_saving(),
        blfft.get_saved_spectrum_dtype(),
    )
    yield
    blfft.set_weight_spectrum_saving(saved[0])
    blfft.set_input_spectrum_saving(saved[1])
    blfft.set_saved_spectrum_dtype(saved[2])


@pytest.mark.parametrize("w_mode", ["auto", "keep", "recompute"])
@pytest.mark.parametrize("x_mode", ["auto", "keep", "recompute"])
@pytest.mark.parametrize("saved", [None, torch.bfloat16])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_training_bitwise_under_every_saving_mode(w_mode, x_mode, saved, dtype, _saving_modes):
    # Review of #15: with bfloat16 saved spectra the uncached layer's input gradient reads the
    # weight spectrum rounded to bfloat16 (where its mode keeps one), the caching layer read the
    # cache's full-precision one: gradients differed. Now the same bits, for a leaf input and an
    # activation, first and second order.
    blfft.set_weight_spectrum_saving(w_mode)
    blfft.set_input_spectrum_saving(x_mode)
    blfft.set_saved_spectrum_dtype(saved)
    m, ref = _pair(blfft.nn.Conv2d, 3, 5, 3, padding=1, compress_rate=0.5, dtype=dtype)
    x = torch.randn(4, 3, 10, 10, dtype=dtype, requires_grad=True)
    g = torch.randn(4, 5, 10, 10, dtype=dtype)
    for got, want in zip(_grads(m, x, g), _grads(ref, x, g), strict=True):
        assert torch.equal(got, want)
    for layer in (m, ref):  # an activation (not a leaf) and a gradient penalty
        a = x * 2
        gx = torch.autograd.grad((layer(a) * g).sum(), a, create_graph=True)[0]
        layer.weight.grad = None
        gx.square().sum().backward()
    assert torch.equal(m.weight.grad, ref.weight.grad)
    assert _count(m)[0] == 1


def test_weight_data_write_between_forward_and_backward():
    # A write through .data after forward (it bypasses autograd's version check): the caching
    # layer's input gradient is that of the weight forward used (the spectrum it read); the
    # uncached layer's is too where it kept the weight spectrum, and is that of the new weight
    # where it recomputes the spectrum from the weight (as torch's conv2d, which reads the
    # saved weight).
    blfft.set_weight_spectrum_saving("recompute")
    try:
        m, ref = _pair(blfft.nn.Conv2d, 3, 5, 3, padding=1, compress_rate=0.5)
        w0 = m.weight.detach().clone()
        x = torch.randn(4, 3, 10, 10, dtype=F64, requires_grad=True)
        g = torch.randn(4, 5, 10, 10, dtype=F64)
        got = []
        for layer in (m, ref):
            y = layer(x)
            layer.weight.data.mul_(2)
            got.append(torch.autograd.grad(y, (x, layer.weight), g))
        fresh, _ = _pair(blfft.nn.Conv2d, 3, 5, 3, padding=1, compress_rate=0.5)
        with torch.no_grad():
            fresh.weight.copy_(w0)
            fresh.bias.copy_(m.bias)
        want = torch.autograd.grad(fresh(x), (x, fresh.weight), g)
        assert torch.equal(got[0][0], want[0]) and torch.equal(got[0][1], want[1])
        assert not torch.equal(got[1][0], want[0])  # the uncached one read the new weight
    finally:
        blfft.set_weight_spectrum_saving("auto")


@pytest.mark.cuda
def test_cuda_training_and_eval_share_the_spectrum():
    m, ref = _pair(blfft.nn.Conv2d, 3, 5, 3, padding=1, compress_rate=0.5, device="cuda")
    x = torch.randn(4, 3, 10, 10, dtype=F64, device="cuda", requires_grad=True)
    g = torch.randn(4, 5, 10, 10, dtype=F64, device="cuda")
    for got, want in zip(_grads(m, x, g), _grads(ref, x, g), strict=True):
        assert (got - want).abs().max() <= 1e-12 * want.abs().max()
    with torch.no_grad():
        m(x)
    assert _count(m) == (1, 1)
    m.weight.data.mul_(2)
    with torch.no_grad():
        ref.load_state_dict(m.state_dict())
        assert (m(x) - ref(x)).abs().max() <= 1e-12 * ref(x).abs().max()
    assert _count(m) == (2, 1)
    blfft.clear_caches()
    assert m._blfft_weight_cache.nbytes == 0
    assert _ops.conv_forward_w_spectrum is not None
