"""The blfft operators registered with torch.library, and the geometry look-up they share.

Two custom ops carry every band-limited convolution:

``blfft::conv_forward(x, weight, bias, stride, padding, dilation, groups, rate, band,
save_x_spectrum, save_w_spectrum, w_spectrum_saving="auto", saved_dtype="",
x_spectrum_saving="auto") -> (y, x_spectrum, w_spectrum)``
    y is the band-limited convolution. The compressed spectra come back as extra outputs so that
    autograd can keep them for backward (map reuse); an empty tensor stands for "not kept".
    ``w_spectrum_saving`` / ``x_spectrum_saving`` are modes of :func:`set_weight_spectrum_saving`
    / :func:`set_input_spectrum_saving`, and ``saved_dtype`` the storage of the kept spectra (""
    or "bfloat16", :func:`set_saved_spectrum_dtype`), passed explicitly (by
    ``blfft.functional``) so that they are part of every traced graph.

``blfft::conv_backward(grad_output, x, x_spectrum, weight, w_spectrum, x_shape, w_shape, ...)
-> (grad_input, grad_weight, grad_bias)``
    All gradients from one transform of grad_output. A spectrum that forward did not keep is
    recomputed from x / weight. An empty tensor stands for a gradient that was not asked for.

``stride``, ``padding`` and ``dilation`` have one entry per spatial axis (1D: length 1). The kept
set is ``band`` (``[i_h, i_w]``, band limits) when it is non-empty, else the rate ``rate``.

``blfft::conv_forward_cached`` is the inference-only forward from a weight spectrum kept by a
layer (:mod:`blfft._weight_cache`).

Every shape comes from the C++ core (:func:`blfft._geometry.geometry`); nothing here re-derives
one. Both ops have fake implementations, so they trace under torch.compile, and an autograd
formula. Which spectra forward keeps is decided once, by :func:`_settings.kept_spectrum_sizes`,
for the op and its fake kernel alike.

The other jobs live in their own modules: ``_backends`` (loading the backends, device checks,
dispatch, DLPack), ``_settings`` (saving modes, saved dtype, determinism), ``_memory`` (buffer cap,
what is held between calls, ``clear_caches``), ``_geometry`` (the geometry cache) and
``_weight_cache``. Their public names are re-exported here for existing callers.

Backends: CPU tensors go to ``blfft._core``, CUDA tensors to ``blfft._cuda`` (docs/design.md 2
and 3; :mod:`blfft._backends`). The op signatures are the same for both; each implementation
dispatches on the device of its tensors, and every ``_cuda`` call gets torch's current stream of
that device; outputs and saved spectra are allocated by torch on the tensors' device.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._backends import (
    backend_for,
    cuda_device_count,
    cuda_unusable_reason,
    dl,
    eager_only,
    is_cpu,
)
from ._geometry import geometry
from ._memory import alloc, clear_caches
from ._settings import (
    SAVED_DTYPES,
    SPECTRUM_SAVING_MODES,
    deterministic_kw,
    get_deterministic,
    get_input_spectrum_saving,
    get_saved_spectrum_dtype,
    get_weight_spectrum_saving,
    kept_spectrum_sizes,
    set_deterministic,
    set_input_spectrum_saving,
    set_saved_spectrum_dtype,
    set_weight_spectrum_saving,
)
from ._weight_cache import WeightSpectrumCache

__all__ = [
    "SAVED_DTYPES",
    "SPECTRUM_SAVING_MODES",
    "WeightSpectrumCache",
    "clear_caches",
    "conv_backward",
    "conv_forward",
    "conv_forward_cached",
    "cuda_device_count",
    "cuda_unusable_reason",
    "geometry",
    "get_deterministic",
    "get_input_spectrum_saving",
    "get_saved_spectrum_dtype",
    "get_weight_spectrum_saving",
    "select_band",
    "set_deterministic",
    "set_input_spectrum_saving",
    "set_saved_spectrum_dtype",
    "set_weight_spectrum_saving",
]


def _none(like: Tensor) -> Tensor:
    """The empty tensor that stands for "not kept" / "not asked for" in the ops' outputs."""
    return like.new_empty((0,))


# ------------------------------------------------------------------------------------------------
# conv_forward
# ------------------------------------------------------------------------------------------------


@torch.library.custom_op("blfft::conv_forward", mutates_args=())
def conv_forward(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
    rate: float,
    band: List[int],
    save_x_spectrum: bool,
    save_w_spectrum: bool,
    w_spectrum_saving: str = "auto",
    saved_dtype: str = "",
    x_spectrum_saving: str = "auto",
) -> Tuple[Tensor, Tensor, Tensor]:
    be, stream = backend_for(x, "input", ("weight", weight), ("bias", bias))
    p, c, g = geometry(x.shape, weight.shape, stride, padding, dilation, groups, rate, band)
    y = alloc(x, g.output_shape, "output")
    nx, nw = kept_spectrum_sizes(
        g, save_x_spectrum, save_w_spectrum, w_spectrum_saving, saved_dtype, x_spectrum_saving
    )
    xs = alloc(x, (nx,), "input spectrum") if nx else None
    ws = alloc(weight, (nw,), "weight spectrum") if nw else None
    b = None if bias is None else bias.detach().contiguous()
    be.forward(
        p, c, dl(x), dl(weight), dl(b), dl(y), dl(xs), dl(ws), *stream, **deterministic_kw(be)
    )
    store = SAVED_DTYPES[saved_dtype]
    if store is not None:  # the full-precision spectra are temporaries, freed on return
        xs = None if xs is None else xs.to(store)
        ws = None if ws is None else ws.to(store)
    return y, (xs if xs is not None else _none(x)), (ws if ws is not None else _none(weight))


_SAVING_DEFAULTS = ("auto", "", "auto")  # conv_forward's w_spectrum_saving, saved_dtype, ...


@conv_forward.register_fake
def _conv_forward_fake(x, weight, bias, stride, padding, dilation, groups, rate, band, *saving):
    # saving: save_x_spectrum, save_w_spectrum, then w_spectrum_saving, saved_dtype and
    # x_spectrum_saving where they were passed (torch drops trailing arguments equal to their
    # defaults before it calls a fake kernel).
    saving = saving + _SAVING_DEFAULTS[len(saving) - 2 :]
    saved_dtype = saving[3]
    _, _, g = geometry(x.shape, weight.shape, stride, padding, dilation, groups, rate, band)
    y = x.new_empty(g.output_shape)
    nx, nw = kept_spectrum_sizes(g, *saving)
    store = SAVED_DTYPES[saved_dtype]
    return (
        y,
        x.new_empty((nx,), dtype=store if nx and store else x.dtype),
        weight.new_empty((nw,), dtype=store if nw and store else weight.dtype),
    )


def _forward_setup_context(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, rate, band = inputs[:9]
    _, xs, ws = output
    ctx.mark_non_differentiable(xs, ws)
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    # grad_weight needs the input spectrum (or the input to recompute it); grad_input needs the
    # weight spectrum (or the weight). Keep only what the requested gradients need.
    saved_x = saved_xs = saved_w = saved_ws = None
    if need_w:
        if xs.numel() > 0:
            saved_xs = xs
        else:
            saved_x = x
    if need_x:
        if ws.numel() > 0:
            saved_ws = ws
        else:
            saved_w = weight
    ctx.save_for_backward(saved_x, saved_xs, saved_w, saved_ws)
    ctx.conf = (
        list(x.shape),
        list(weight.shape),
        list(stride),
        list(padding),
        list(dilation),
        groups,
        rate,
        list(band),
    )


def _forward_backward(ctx, grad_y, _grad_xs, _grad_ws):
    x, xs, w, ws = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = conv_backward(
        grad_y, x, xs, w, ws, *ctx.conf, bool(need_x), bool(need_w), bool(need_b)
    )
    # One gradient per argument of conv_forward: only x, weight and bias have one.
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None) + (None,) * 11


conv_forward.register_autograd(_forward_backward, setup_context=_forward_setup_context)


# ------------------------------------------------------------------------------------------------
# conv_backward
# ------------------------------------------------------------------------------------------------


@torch.library.custom_op("blfft::conv_backward", mutates_args=())
def conv_backward(
    grad_output: Tensor,
    x: Optional[Tensor],
    x_spectrum: Optional[Tensor],
    weight: Optional[Tensor],
    w_spectrum: Optional[Tensor],
    x_shape: List[int],
    w_shape: List[int],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
    rate: float,
    band: List[int],
    need_input_grad: bool,
    need_weight_grad: bool,
    need_bias_grad: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    # An empty spectrum means "not kept", as in conv_forward's outputs (compiled graphs may pass
    # the empty tensor itself rather than None).
    if x_spectrum is not None and x_spectrum.numel() == 0:
        x_spectrum = None
    if w_spectrum is not None and w_spectrum.numel() == 0:
        w_spectrum = None
    be, stream = backend_for(
        grad_output,
        "grad_output",
        ("x", x),
        ("x_spectrum", x_spectrum),
        ("weight", weight),
        ("w_spectrum", w_spectrum),
    )
    p, c, g = geometry(x_shape, w_shape, stride, padding, dilation, groups, rate, band)
    go = grad_output.detach()
    det = deterministic_kw(be)
    xs = ws = None
    if need_weight_grad:
        if x_spectrum is not None:
            xs = x_spectrum.detach().to(go.dtype)  # a no-op unless stored in bfloat16
        elif x is not None:
            xs = alloc(go, (g.x_spectrum_size,), "input spectrum")
            be.input_spectrum(p, c, dl(x), dl(xs), *stream, **det)
        else:
            raise ValueError("blfft: conv_backward needs x or x_spectrum for the weight gradient")
    w_for_core = None
    if need_input_grad:
        if w_spectrum is not None:
            ws = w_spectrum.detach().to(go.dtype)
        elif weight is not None and is_cpu(be):
            # The CPU core mixes from the weight itself (from its taps, or a spectrum it makes
            # for the call): no weight-sized spectrum is allocated here.
            w_for_core = weight.detach()
        elif weight is not None:
            ws = alloc(go, (g.w_spectrum_size,), "weight spectrum")
            be.weight_spectrum(p, c, dl(weight), dl(ws), *stream, **det)
        else:
            raise ValueError(
                "blfft: conv_backward needs weight or w_spectrum for the input gradient"
            )
    gx = alloc(go, g.input_shape, "input gradient") if need_input_grad else None
    gw = alloc(go, g.weight_shape, "weight gradient") if need_weight_grad else None
    gb = go.new_empty((g.params.out_channels,)) if need_bias_grad else None
    if gx is not None or gw is not None or gb is not None:
        if w_for_core is not None:
            be.backward(p, c, dl(go), dl(xs), None, dl(gx), dl(gw), dl(gb), dl(w_for_core), **det)
        else:
            be.backward(p, c, dl(go), dl(xs), dl(ws), dl(gx), dl(gw), dl(gb), None, *stream, **det)
    return (
        gx if gx is not None else _none(go),
        gw if gw is not None else _none(go),
        gb if gb is not None else _none(go),
    )


@conv_backward.register_fake
def _conv_backward_fake(grad_output, x, x_spectrum, weight, w_spectrum, *conf_and_needs):
    # conf_and_needs: conv_backward's arguments from x_shape to band (geometry's), then the three
    # need_*_grad flags.
    *conf, need_input_grad, need_weight_grad, need_bias_grad = conf_and_needs
    _, _, g = geometry(*conf)
    go = grad_output
    return (
        go.new_empty(g.input_shape if need_input_grad else (0,)),
        go.new_empty(g.weight_shape if need_weight_grad else (0,)),
        go.new_empty((g.params.out_channels,) if need_bias_grad else (0,)),
    )


# ------------------------------------------------------------------------------------------------
# Inference with a cached weight spectrum
# ------------------------------------------------------------------------------------------------


@torch.library.custom_op("blfft::conv_forward_cached", mutates_args=())
def conv_forward_cached(
    x: Tensor,
    w_spectrum: Tensor,
    bias: Optional[Tensor],
    w_shape: List[int],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    groups: int,
    rate: float,
    band: List[int],
) -> Tensor:
    """Forward from a weight spectrum computed earlier (no autograd: inference only)."""
    be, stream = backend_for(x, "input", ("w_spectrum", w_spectrum), ("bias", bias))
    p, c, g = geometry(x.shape, w_shape, stride, padding, dilation, groups, rate, band)
    det = deterministic_kw(be)
    xs = alloc(x, (g.x_spectrum_size,), "input spectrum")
    be.input_spectrum(p, c, dl(x), dl(xs), *stream, **det)
    y = alloc(x, g.output_shape, "output")
    b = None if bias is None else bias.detach().contiguous()
    be.forward_spectra(p, c, dl(xs), dl(w_spectrum), dl(b), dl(y), *stream, **det)
    return y


@conv_forward_cached.register_fake
def _conv_forward_cached_fake(
    x, w_spectrum, bias, w_shape, stride, padding, dilation, groups, rate, band
):
    _, _, g = geometry(x.shape, w_shape, stride, padding, dilation, groups, rate, band)
    return x.new_empty(g.output_shape)


# ------------------------------------------------------------------------------------------------
# Energy-based selection (data-dependent: runs eagerly, outside any compiled graph)
# ------------------------------------------------------------------------------------------------


@eager_only
def select_band(
    x: Tensor,
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    fraction: float,
):
    """Band limits [i_h, i_w] of the largest compression keeping `fraction` of x's energy.

    For CUDA tensors the energy map is computed on the GPU (blfft::cuda::select_by_energy, which
    synchronises the current stream) and the selection made on the CPU, as for CPU tensors."""
    be, stream = backend_for(x, "input")
    if not bool(torch.isfinite(x).all()):
        # A NaN or Inf makes every bin's energy non-finite: no kept set can be chosen.
        raise ValueError(
            "blfft: energy= needs a finite input, but input is not finite (it contains NaN or "
            "Inf); use compress_rate= instead, or clean the input"
        )
    p, _, _ = geometry(x.shape, w_shape, stride, padding, dilation, groups, 0.0, ())
    sel = be.select_by_energy(p, dl(x), float(fraction), *stream)
    return [int(sel.limits[0]), int(sel.limits[1])], sel
