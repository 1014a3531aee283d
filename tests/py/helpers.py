"""Shared test helpers: tolerances and comparisons."""

import torch

# Relative l2 error allowed against a float64 oracle, per dtype of the computation.
REL_TOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, (a.shape, b.shape)
    assert not torch.isnan(a).any(), "NaN in result"
    den = b.norm().item()
    num = (a - b).norm().item()
    return num / den if den > 0 else num


def assert_close(a, b, dtype, what=""):
    err = rel_l2(a, b)
    assert err <= REL_TOL[dtype], f"{what}: relative l2 error {err:.3g} > {REL_TOL[dtype]:.1g}"
