"""Second derivatives (docs/design.md 1.6): gradgradcheck against finite differences of blfft's own
first derivative, torch's second derivatives at rate 0, and a WGAN-GP style gradient penalty."""

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

import blfft
import blfft.functional as BF
from helpers import case_tensors, rel_l2

RATES = [0.0, 0.5, 0.75]

# (N, C, F, spatial, kernel, stride, padding, dilation, groups, bias): odd sizes, stride, padding,
# dilation, groups.
CASES_2D = [
    (2, 2, 3, (7, 6), (3, 3), 1, 1, 1, 1, True),
    (1, 4, 4, (9, 7), (3, 2), 2, (1, 0), (1, 2), 2, True),
    (2, 3, 3, (6, 5), (2, 3), (2, 1), 0, 1, 3, False),
]
CASES_1D = [
    (2, 2, 3, 11, 3, 1, 1, 1, 1, True),
    (1, 4, 2, 13, 3, 2, 2, 2, 2, True),
]


def _conv(ndim):
    return BF.conv1d if ndim == 1 else BF.conv2d


@pytest.fixture
def restore_settings():
    yield
    blfft.set_input_spectrum_saving("auto")
    blfft.set_weight_spectrum_saving("auto")
    blfft.set_saved_spectrum_dtype(None)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(
    "ndim,case", [(2, c) for c in CASES_2D] + [(1, c) for c in CASES_1D], ids=str
)
def test_gradgradcheck(ndim, case, rate):
    x, w, b, kw = case_tensors(ndim, case)
    inputs = tuple(t.requires_grad_() for t in (x, w, b) if t is not None)
    conv = _conv(ndim)

    def fn(x, w, *b):
        return conv(x, w, *b, compress_rate=rate, **kw)

    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("weight_mode", ["auto", "keep"])
@pytest.mark.parametrize("rate", [0.5, 0.75])
def test_gradgradcheck_of_an_intermediate_activation(rate, weight_mode, restore_settings):
    """Inside a network: the input of the second layer is an activation (not a leaf) whose
    spectrum replaces it, and the weight may be kept as its spectrum."""
    blfft.set_weight_spectrum_saving(weight_mode)
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def net(x, w1, w2):
        h = torch.tanh(BF.conv2d(x, w1, padding=1, compress_rate=rate))
        return BF.conv2d(h, w2, padding=1, compress_rate=rate)

    # Second derivatives toward the inputs and weights through input gradients (what a gradient
    # penalty needs) are exact with any saving mode.
    def grad_x(x, w1, w2):
        y = net(x, w1, w2)
        return torch.autograd.grad(y.square().sum(), x, create_graph=True)[0]

    assert torch.autograd.gradcheck(grad_x, (x, w1, w2))
    # All of them, weight gradients included: needs the activations themselves.
    blfft.set_input_spectrum_saving("recompute")
    assert torch.autograd.gradgradcheck(net, (x, w1, w2))


def test_weight_gradient_toward_an_unkept_activation_raises(restore_settings):
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, requires_grad=True)
    h = x.clone()  # an activation: forward keeps its spectrum (smaller at rate 0.75), not it
    w = torch.randn(4, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    y = BF.conv2d(h, w, padding=1, compress_rate=0.75)
    (gw,) = torch.autograd.grad(y.square().sum(), w, create_graph=True)
    with pytest.raises(RuntimeError, match="set_input_spectrum_saving\\('recompute'\\)"):
        torch.autograd.grad(gw.sum(), x)
    # With the activation kept, the same derivative exists and is checked.
    blfft.set_input_spectrum_saving("recompute")
    y = BF.conv2d(x.clone(), w, padding=1, compress_rate=0.75)
    (gw,) = torch.autograd.grad(y.square().sum(), w, create_graph=True)
    (gx,) = torch.autograd.grad(gw.sum(), x)
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0


def test_weight_hessian_vector_product_does_not_need_an_unkept_activation(restore_settings):
    """A Hessian-vector product toward a layer's own weight, whose input is an activation of
    earlier layers (kept as its spectrum only): the derivative toward that activation is not
    asked for, so it must not raise; it equals the one computed with the activation kept."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    w1 = torch.randn(4, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(w2)

    def hvp():
        h = torch.tanh(BF.conv2d(x, w1, padding=1, compress_rate=0.75))
        y = BF.conv2d(h, w2, padding=1, compress_rate=0.75)
        (gw2,) = torch.autograd.grad(y.sin().sum(), w2, create_graph=True)
        return gw2, torch.autograd.grad((gw2 * v).sum(), w2)[0]

    gw2, hv = hvp()
    blfft.set_input_spectrum_saving("recompute")
    gw2_kept, hv_kept = hvp()
    assert rel_l2(gw2, gw2_kept) < 1e-12 and rel_l2(hv, hv_kept) < 1e-12
    # All the parameters (w1 through the activation): the activation is needed, and it raises.
    blfft.set_input_spectrum_saving("auto")
    h = torch.tanh(BF.conv2d(x, w1, padding=1, compress_rate=0.75))
    y = BF.conv2d(h, w2, padding=1, compress_rate=0.75)
    (gw2,) = torch.autograd.grad(y.sin().sum(), w2, create_graph=True)
    with pytest.raises(RuntimeError, match="set_input_spectrum_saving\\('recompute'\\)"):
        torch.autograd.grad((gw2 * v).sum(), (w1, w2))


@pytest.mark.parametrize("rate", [0.5, 0.75])
def test_second_order_from_kept_spectra_without_the_tensors(rate, restore_settings, monkeypatch):
    """Tensors that need no gradient are not kept beside their spectra: the second-order passes
    then run from the spectra (conv_forward_from_x_spectrum, conv_forward_cached)."""
    from blfft import _ops

    calls = []
    for name in ("conv_forward_from_x_spectrum", "conv_forward_cached"):
        op = getattr(_ops, name)
        monkeypatch.setattr(_ops, name, lambda *a, op=op, name=name: calls.append(name) or op(*a))
    blfft.set_weight_spectrum_saving("keep")
    x = torch.randn(1, 2, 12, 11, dtype=torch.float64)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    # Only w needs grad: the input spectrum is kept (smaller than x), x is not.
    assert torch.autograd.gradgradcheck(
        lambda w: BF.conv2d(x, w, padding=1, compress_rate=rate), (wg,)
    )
    # Only x needs grad: the weight spectrum is kept ("keep"), w is not.
    assert torch.autograd.gradgradcheck(
        lambda x: BF.conv2d(x, w, padding=1, compress_rate=rate).square(), (xg,)
    )
    assert set(calls) == {"conv_forward_from_x_spectrum", "conv_forward_cached"}


def test_second_derivatives_match_torch_at_rate_zero():
    x, w, b, kw = case_tensors(2, CASES_2D[1])
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = [t.clone().requires_grad_() for t in (x, w, b)]

    def penalty(conv, x, w, b):
        y = conv(x, w, b, **kw)
        gx, gw = torch.autograd.grad(y.tanh().sum(), (x, w), create_graph=True)
        return gx.square().sum() + gw.square().sum()

    g_ours = torch.autograd.grad(penalty(BF.conv2d, *ours), ours)
    g_ref = torch.autograd.grad(penalty(F.conv2d, *ref), ref)
    for a, r in zip(g_ours, g_ref, strict=True):
        assert rel_l2(a, r) < 1e-12


def test_create_graph_backward_does_not_read_bfloat16_spectra(restore_settings):
    """A create_graph backward computes from x and w where kept (here: a leaf x and a weight that
    requires grad), so bfloat16 storage of the spectra does not round its gradients."""
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, dtype=torch.float64, requires_grad=True)

    def grads():
        y = BF.conv2d(x, w, padding=1, compress_rate=0.75)
        return torch.autograd.grad(y.square().sum(), (x, w), create_graph=True)

    exact = grads()
    blfft.set_saved_spectrum_dtype(torch.bfloat16)
    blfft.set_weight_spectrum_saving("keep")
    rounded = grads()
    for a, r in zip(rounded, exact, strict=True):
        assert rel_l2(a, r) < 1e-13


class _Critic(tnn.Module):
    def __init__(self, conv2d, rate):
        super().__init__()
        kw = {} if conv2d is tnn.Conv2d else {"compress_rate": rate}
        self.c1 = conv2d(1, 8, 3, padding=1, **kw)
        self.c2 = conv2d(8, 8, 3, stride=2, padding=1, **kw)
        self.fc = tnn.Linear(8, 1)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x), 0.2)
        h = F.leaky_relu(self.c2(h), 0.2)
        return self.fc(h.mean((2, 3)))


def _gradient_penalty(critic, real, fake):
    eps = torch.rand(real.shape[0], 1, 1, 1, dtype=real.dtype)
    mix = (eps * real + (1 - eps) * fake).requires_grad_()
    (g,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def test_wgan_gp_penalty_matches_torch_at_rate_zero():
    torch.manual_seed(0)
    ref = _Critic(tnn.Conv2d, 0.0).double()
    ours = blfft.convert(_Critic(tnn.Conv2d, 0.0).double())
    ours.load_state_dict(ref.state_dict())
    real, fake = torch.randn(4, 1, 12, 12).double(), torch.randn(4, 1, 12, 12).double()
    torch.manual_seed(1)
    gp_ref = _gradient_penalty(ref, real, fake)
    torch.manual_seed(1)
    gp = _gradient_penalty(ours, real, fake)
    assert abs(gp.item() - gp_ref.item()) <= 1e-12 * abs(gp_ref.item())
    # (The last bias does not enter the penalty: no gradient.)
    g_ref = torch.autograd.grad(gp_ref, list(ref.parameters())[:-1])
    g = torch.autograd.grad(gp, list(ours.parameters())[:-1])
    for a, r in zip(g, g_ref, strict=True):
        assert rel_l2(a, r) < 1e-10


def test_wgan_gp_trains_with_compression():
    torch.manual_seed(0)
    critic = _Critic(blfft.nn.Conv2d, 0.5)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.0, 0.9))
    real = torch.randn(16, 1, 12, 12).cumsum(-1) / 4  # smooth "real" images
    fake = torch.randn(16, 1, 12, 12)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        gp = _gradient_penalty(critic, real, fake)
        loss = critic(fake).mean() - critic(real).mean() + 10 * gp
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 1.0, losses


def test_gradgradcheck_in_energy_mode():
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64).cumsum(-1).requires_grad_()
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    y = BF.conv2d(x, w, padding=1, energy=0.9)
    assert rel_l2(y, F.conv2d(x, w, padding=1)) > 1e-6  # compressed
    # The choice depends on x; gradcheck perturbs x, so the set is fixed through w only.
    assert torch.autograd.gradgradcheck(lambda w: BF.conv2d(x, w, padding=1, energy=0.9), (w,))
