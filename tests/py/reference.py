"""Independent oracles for the Python tests.

A dense band-limited convolution written from docs/design.md section 1 with torch.fft: full
spectra, a 0/1 mask, autograd for the gradients. It re-derives the FFT grid and the kept sets from
the contract on purpose (it must not ask blfft), so that it checks the core rather than mirrors it.
"""

import math

import torch
import torch.nn.functional as F


def fast_size(n: int) -> int:
    """Smallest m >= n whose prime factors are all in {2, 3, 5, 7}."""
    m = n
    while True:
        r = m
        for f in (2, 3, 5, 7):
            while r % f == 0:
                r //= f
        if r == 1:
            return m
        m += 1


def band_limit(length: int, rate: float, ndim: int) -> int:
    half = length // 2 + 1
    keep = (1.0 - rate) if ndim == 1 else math.sqrt(1.0 - rate)
    i = math.floor(half * keep + 1e-9)
    return min(max(i, 1), half)


def mask(lh: int, lw: int, i_h: int, i_w: int, dtype=torch.float64) -> torch.Tensor:
    """The kept set as a 0/1 mask over the (Lh, Lw//2+1) rfft2 bins."""
    rows = torch.arange(lh)
    signed = torch.minimum(rows, lh - rows)
    keep_rows = signed <= i_h - 1
    keep_cols = torch.arange(lw // 2 + 1) <= i_w - 1
    return (keep_rows[:, None] & keep_cols[None, :]).to(dtype)


def _pairs(v, ndim):
    if isinstance(v, int):
        return (v,) * ndim
    return tuple(v)


def setup_2d(x, w, stride, padding, dilation):
    """Everything as 2D (1D gets a height-1 axis): xp, dilated w, sizes."""
    ndim = x.dim() - 2
    stride, padding, dilation = (_pairs(v, ndim) for v in (stride, padding, dilation))
    if ndim == 1:
        x, w = x.unsqueeze(2), w.unsqueeze(2)
        stride, padding, dilation = (1,) + stride, (0,) + padding, (1,) + dilation
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    f, cg, kh, kw = w.shape
    khd, kwd = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    wd = w.new_zeros((f, cg, khd, kwd))
    wd[:, :, :: dilation[0], :: dilation[1]] = w
    return ndim, xp, wd, stride


def grid_and_limits(ndim, hp, wp, rate=0.0, band=None):
    lh = 1 if ndim == 1 else fast_size(hp)
    lw = fast_size(wp)
    if band is not None:
        i_h, i_w = band
    else:
        i_h = 1 if ndim == 1 else band_limit(lh, rate, 2)
        i_w = band_limit(lw, rate, ndim)
    return lh, lw, i_h, i_w


def dense_conv(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, rate=0.0, band=None):
    """Dense band-limited conv (docs/design.md 1.5) of (N, C, L) / (N, C, H, W) input;
    differentiable.

    `padding` is symmetric (ints); `band` = (i_h, i_w) overrides `rate` (1D: i_h = 1).
    """
    ndim, xp, wd, (sh, sw) = setup_2d(x, w, stride, padding, dilation)
    n, c, hp, wp = xp.shape
    f, cg, khd, kwd = wd.shape
    lh, lw, i_h, i_w = grid_and_limits(ndim, hp, wp, rate, band)
    X = torch.fft.rfft2(xp, s=(lh, lw))  # (N, C, Lh, B)
    W = torch.fft.rfft2(wd, s=(lh, lw))  # (F, Cg, Lh, B)
    fg = f // groups
    X = X.reshape(n, groups, 1, cg, lh, -1)
    W = W.reshape(1, groups, fg, cg, lh, -1)
    Y = (X * W.conj()).sum(dim=3).reshape(n, f, lh, -1)
    Y = Y * mask(lh, lw, i_h, i_w, dtype=xp.dtype)
    y = torch.fft.irfft2(Y, s=(lh, lw))
    ho1, wo1 = hp - khd + 1, wp - kwd + 1
    y = y[:, :, :ho1:sh, :wo1:sw]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y.squeeze(2) if ndim == 1 else y


def energy_limits(x, w_shape, padding, fraction):
    """Band limits chosen by energy (docs/design.md 1.7), derived independently: the energy of every
    rfft bin of the padded input (conjugate-pair columns counted twice), the rate family's sets
    at every rate where a band limit changes, and the most compressed one keeping `fraction`."""
    ndim = x.dim() - 2
    w = torch.zeros(w_shape, dtype=x.dtype)
    _, xp, _, _ = setup_2d(x, w, 1, padding, 1)
    hp, wp = xp.shape[-2:]
    lh, lw, _, _ = grid_and_limits(ndim, hp, wp)
    X = torch.fft.rfft2(xp.double(), s=(lh, lw))
    e = (X.abs() ** 2).sum(dim=(0, 1))
    bins = lw // 2 + 1
    col_weight = torch.full((bins,), 2.0, dtype=torch.float64)
    col_weight[0] = 1.0
    if lw % 2 == 0:
        col_weight[-1] = 1.0
    e = e * col_weight
    total = e.sum().item()
    rates = {0.0}
    for length in [lw] if ndim == 1 else [lh, lw]:
        half = length // 2 + 1
        for j in range(1, half):
            s = j / half
            rates.add(1.0 - (s if ndim == 1 else s * s))
    best = None
    for r in sorted(rates):
        i_h = 1 if ndim == 1 else band_limit(lh, r, 2)
        i_w = band_limit(lw, r, ndim)
        kept = (e * mask(lh, lw, i_h, i_w)).sum().item()
        if kept >= fraction * total:
            best = (i_h, i_w, r)
    return best


def band_limit_3d(length: int, rate: float) -> int:
    """Per-axis band limit of a 3D layer: exponent 1/3 (docs/design.md 1.4 with ndim = 3)."""
    half = length // 2 + 1
    i = math.floor(half * (1.0 - rate) ** (1 / 3) + 1e-9)
    return min(max(i, 1), half)


def mask_3d(ld: int, lh: int, lw: int, i_d: int, i_h: int, i_w: int, dtype=torch.float64):
    """The 3D kept set as a 0/1 mask over the (Ld, Lh, Lw//2+1) rfftn bins: |k_d| <= i_d - 1,
    |k_h| <= i_h - 1, rfft columns k_w <= i_w - 1."""
    d = torch.arange(ld)
    keep_d = torch.minimum(d, ld - d) <= i_d - 1
    return keep_d[:, None, None].to(dtype) * mask(lh, lw, i_h, i_w, dtype)[None]


def dense_conv3d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, rate=0.0, band=None):
    """Dense band-limited 3D conv of an (N, C, D, H, W) input: full rfftn of the padded input and
    the dilated weight on the default grid, the product summed over channels, the 3D mask,
    irfftn, crop and stride; differentiable. `band` = (i_d, i_h, i_w) overrides `rate`."""
    stride, padding, dilation = (_pairs(v, 3) for v in (stride, padding, dilation))
    xp = F.pad(x, (padding[2], padding[2], padding[1], padding[1], padding[0], padding[0]))
    f, cg, kd, kh, kw = w.shape
    ext = [dl * (k - 1) + 1 for dl, k in zip(dilation, (kd, kh, kw), strict=True)]
    wd = w.new_zeros((f, cg, *ext))
    wd[:, :, :: dilation[0], :: dilation[1], :: dilation[2]] = w
    n, c = xp.shape[:2]
    padded = xp.shape[2:]
    grid = [fast_size(p) for p in padded]
    limits = band if band is not None else [band_limit_3d(L, rate) for L in grid]
    X = torch.fft.rfftn(xp, s=grid, dim=(2, 3, 4))
    W = torch.fft.rfftn(wd, s=grid, dim=(2, 3, 4))
    fg = f // groups
    X = X.reshape(n, groups, 1, cg, *X.shape[2:])
    W = W.reshape(1, groups, fg, cg, *W.shape[2:])
    Y = (X * W.conj()).sum(dim=3).reshape(n, f, *X.shape[-3:])
    Y = Y * mask_3d(*grid, *limits, dtype=xp.dtype)
    y = torch.fft.irfftn(Y, s=grid, dim=(2, 3, 4))
    full = [p - e + 1 for p, e in zip(padded, ext, strict=True)]
    y = y[:, :, : full[0] : stride[0], : full[1] : stride[1], : full[2] : stride[2]]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1, 1)
    return y
