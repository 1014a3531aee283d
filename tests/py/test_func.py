"""torch.func transforms over blfft's functional ops: grad, vjp, vmap (over the batch, and over a
batched weight through a loop), per-sample gradients, against torch's convolutions."""

import pytest
import torch
import torch.nn.functional as F

import blfft.functional as BF
from helpers import rel_l2

TOL = 1e-12


def _tensors(ndim):
    spatial = (11,) if ndim == 1 else (9, 8)
    x = torch.randn(3, 4, *spatial, dtype=torch.float64)
    w = torch.randn(6, 2, *((3,) * ndim), dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    return x, w, b


def _setup(ndim, transposed):
    """x, w, b and (blfft, torch) functions of one case."""
    x, w, b = _tensors(ndim)
    if transposed:  # weight (C_in, C_out/groups, ...)
        w = torch.randn(4, 3, *w.shape[2:], dtype=torch.float64)
    return (x, w, b) + _pair(ndim, transposed)


def _pair(ndim, transposed=False):
    if transposed:
        kw = dict(stride=2, padding=1, output_padding=1, groups=2)
        ours = BF.conv_transpose1d if ndim == 1 else BF.conv_transpose2d
        theirs = F.conv_transpose1d if ndim == 1 else F.conv_transpose2d
    else:
        kw = dict(stride=2, padding=1, groups=2)
        ours, theirs = (BF.conv1d, F.conv1d) if ndim == 1 else (BF.conv2d, F.conv2d)
    return (lambda x, w, b: ours(x, w, b, **kw)), (lambda x, w, b: theirs(x, w, b, **kw))


def _check(a, r):
    if isinstance(a, tuple):
        for u, v in zip(a, r, strict=True):
            _check(u, v)
        return
    assert rel_l2(a, r) < TOL


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("ndim", [1, 2])
def test_grad_and_vjp(ndim, transposed):
    x, w, b, ours, theirs = _setup(ndim, transposed)

    def loss(f):
        return lambda x, w, b: f(x, w, b).tanh().sum()

    _check(
        torch.func.grad(loss(ours), argnums=(0, 1, 2))(x, w, b),
        torch.func.grad(loss(theirs), argnums=(0, 1, 2))(x, w, b),
    )
    y, vjp = torch.func.vjp(ours, x, w, b)
    yr, vjp_r = torch.func.vjp(theirs, x, w, b)
    _check(y, yr)
    gy = torch.randn_like(y)
    _check(vjp(gy), vjp_r(gy))
    # Second order: grad of grad.
    gg = torch.func.grad(lambda x: torch.func.grad(loss(ours))(x, w, b).square().sum())(x)
    gg_r = torch.func.grad(lambda x: torch.func.grad(loss(theirs))(x, w, b).square().sum())(x)
    assert rel_l2(gg, gg_r) < 1e-10


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("ndim", [1, 2])
def test_vmap_over_the_batch_and_over_weights(ndim, transposed):
    x, w, b, ours, theirs = _setup(ndim, transposed)
    # Over the batch of unbatched samples (one call: the mapped axis joins the batch).
    _check(torch.func.vmap(lambda xi: ours(xi, w, b))(x), theirs(x, w, b))
    # Over a leading axis of batched inputs, mapped at dim 1.
    xs = torch.stack([x, 2 * x], dim=1)
    _check(
        torch.func.vmap(lambda xi: ours(xi, w, b), in_dims=1)(xs),
        torch.stack([theirs(x, w, b), theirs(2 * x, w, b)]),
    )
    # A batched weight (its axis joins the groups: one call).
    ws = torch.stack([w, -w, 0.5 * w])
    _check(
        torch.func.vmap(lambda xi, wi: ours(xi, wi, b))(x, ws),
        torch.stack([theirs(x[i], ws[i], b) for i in range(3)]),
    )


@pytest.mark.parametrize("ndim", [1, 2])
def test_per_sample_gradients(ndim):
    x, w, b = _tensors(ndim)
    ours, theirs = _pair(ndim)

    def per_sample(f):
        def loss(w, b, xi):
            return f(xi[None], w, b).tanh().sum()

        return torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)), in_dims=(None, None, 0))

    _check(per_sample(ours)(w, b, x), per_sample(theirs)(w, b, x))


def test_compressed_grad_matches_autograd():
    """At rate > 0 there is no torch oracle: torch.func.grad equals blfft's own autograd."""
    x, w, b = _tensors(2)

    def loss(w):
        return BF.conv2d(x, w, b, padding=1, groups=2, compress_rate=0.6).square().sum()

    wr = w.clone().requires_grad_()
    (ref,) = torch.autograd.grad(loss(wr), wr)
    assert rel_l2(torch.func.grad(loss)(w), ref) < TOL


@pytest.mark.parametrize("transposed", [False, True])
def test_mapped_weights_and_per_sample_gradients_take_one_call(transposed, monkeypatch):
    """No loop over the mapped axis: a mapped weight and per-sample weight gradients run as one
    grouped call each (the mapped axis joins the groups)."""
    from blfft import _ops

    calls = []
    for name in ("conv_forward", "conv_backward", "conv_transpose"):
        op = getattr(_ops, name)
        monkeypatch.setattr(_ops, name, lambda *a, op=op, name=name: calls.append(name) or op(*a))
    x, w, b, ours, theirs = _setup(2, transposed)
    ws, bs = torch.stack([w, -w, 0.5 * w]), torch.stack([b, 2 * b, -b])
    fn = torch.func.vmap(lambda wi, bi: ours(x, wi, bi))
    _check(fn(ws, bs), torch.stack([theirs(x, ws[i], bs[i]) for i in range(3)]))
    assert len(calls) == 1, calls
    calls.clear()

    def loss(f):
        return lambda w, b, xi: f(xi[None], w, b).tanh().sum()

    grads = torch.func.vmap(torch.func.grad(loss(ours), argnums=(0, 1)), in_dims=(None, None, 0))
    ref = torch.func.vmap(torch.func.grad(loss(theirs), argnums=(0, 1)), in_dims=(None, None, 0))
    _check(grads(w, b, x), ref(w, b, x))
    assert len(calls) == 2, calls  # the forward and one backward for all samples
