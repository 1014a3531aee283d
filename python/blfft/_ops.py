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
layer (:mod:`blfft._weight_cache`); ``conv_forward_from_x_spectrum`` the forward from a kept
input spectrum (a second-order pass). ``blfft::conv_transpose`` is the transposed convolution
(conv_backward's input gradient plus a bias). ``conv_forward_energy`` / ``conv_backward_energy``
select the kept set by energy inside the op (torch.compile without a graph break).

Autograd of any order: conv_backward has an autograd formula too (second derivatives are again
the three passes, see "Autograd" below), and under torch.func transforms the same formulas run
as autograd.Functions with vmap rules. Half-precision tensors are computed in float32 with
float32 spectra: on CUDA read and written in their own type by blfft._cuda (:func:`_native16`),
on the CPU up-cast around the call; either way the float32 result on the same values, rounded
once. The Autocast dispatch keys cast as torch's convolutions do (see "Autocast").

Every shape comes from the C++ core (:func:`blfft._geometry.geometry`); nothing here re-derives
one. Every op has a fake implementation, so they trace under torch.compile. Which spectra
forward keeps is decided once, by :func:`_settings.kept_spectrum_sizes`, for the op and its fake
kernel alike.

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

from . import _settings
from ._backends import (
    backend_for,
    cuda_device_count,
    cuda_unusable_reason,
    dl,
    eager_only,
    is_cpu,
)
from ._geometry import geometry
from ._memory import alloc, check_buffer, clear_caches
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
    "conv_backward_diff",
    "conv_diff",
    "conv_diff_handed_over",
    "conv_forward_cached",
    "conv_forward_energy",
    "conv_forward_from_x_spectrum",
    "conv_forward_w_spectrum",
    "conv_transpose",
    "conv_with_cached_weight",
    "conv_transpose_diff",
    "cuda_device_count",
    "cuda_unusable_reason",
    "geometry",
    "get_deterministic",
    "get_input_spectrum_saving",
    "get_saved_spectrum_dtype",
    "get_weight_spectrum_saving",
    "select_band",
    "select_for_forward",
    "set_deterministic",
    "set_input_spectrum_saving",
    "set_saved_spectrum_dtype",
    "set_weight_spectrum_saving",
]


_HALF = (torch.float16, torch.bfloat16)


def _none(like: Tensor, dtype: Optional[torch.dtype] = None) -> Tensor:
    """The empty tensor that stands for "not kept" / "not asked for" in the ops' outputs."""
    return like.new_empty((0,), dtype=dtype)


def _present(t: Optional[Tensor]) -> Optional[Tensor]:
    """None for None and for the empty tensor that stands for "not kept" / "not asked for"."""
    return t if t is not None and t.numel() > 0 else None


def _up(t: Optional[Tensor]) -> Optional[Tensor]:
    """float16 / bfloat16 tensors as float32, the precision the core computes them in; other
    tensors unchanged."""
    return t.float() if t is not None and t.dtype in _HALF else t


def _native16(backend, t: Tensor, *others: Optional[Tensor]) -> bool:
    """Whether a call hands t's 16-bit dtype to `backend` as it is: t is float16 / bfloat16, the
    call's other tensors (None skipped) share its dtype and the backend is blfft._cuda, which
    reads and writes them in that type and computes in float32 with float32 spectra: the float32
    result on the same values rounded once, what up-casting gives, without the float32 copies.
    Otherwise 16-bit tensors are up-cast (_up): the CPU core computes float32 and float64 only."""
    return (
        not is_cpu(backend)
        and t.dtype in _HALF
        and all(o is None or o.dtype == t.dtype for o in others)
    )


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _layout(t: Optional[Tensor]) -> torch.memory_format:
    """torch.channels_last (4-d) or torch.channels_last_3d (5-d) for a CUDA tensor laid out that
    way (the CUDA kernels read and write it in place, coalesced), else torch.contiguous_format:
    outputs and input gradients take their input's layout, as torch's convolutions do. CPU
    tensors: contiguous outputs."""
    fmt = _CHANNELS_LAST.get(t.dim()) if t is not None and t.is_cuda else None
    if fmt is not None and not t.is_contiguous() and t.is_contiguous(memory_format=fmt):
        return fmt
    return torch.contiguous_format


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


def _call_setup(t: Tensor, name: str, others, shapes, conf):
    """The backend, its trailing arguments, the geometry (params, compression, geometry) and the
    determinism keyword of one call on t's device."""
    be, stream = backend_for(t, name, *others)
    p, c, g = geometry(*shapes, *conf)
    return be, stream, (p, c, g), deterministic_kw(be)


# ------------------------------------------------------------------------------------------------
# Schemas
# ------------------------------------------------------------------------------------------------
#
# The ops' schemas are written out (as torch would infer them from annotations: SymInt, so that
# sizes may be symbolic under torch.compile) rather than inferred, so that the argument lists the
# ops share are declared once. Their Python functions take those lists as `*conf` and the like.

_CONV = "SymInt[] stride, SymInt[] padding, SymInt[] dilation, SymInt groups"
_CONF = f"{_CONV}, float rate, SymInt[] band"  # `conf` below: stride, ..., groups, rate, band
_SHAPES = "SymInt[] x_shape, SymInt[] w_shape"
_NEEDS = "bool need_input_grad, bool need_weight_grad, bool need_bias_grad"
_GRADS = "(Tensor, Tensor, Tensor)"


def _custom_op(name: str, args: str, returns: str):
    """torch.library.custom_op for ``blfft::<name>(<args>) -> <returns>`` (no argument mutated)."""
    schema = f"({args}) -> {returns}"
    return torch.library.custom_op(f"blfft::{name}", mutates_args=(), schema=schema)


# ------------------------------------------------------------------------------------------------
# conv_forward
# ------------------------------------------------------------------------------------------------

_SAVING_DEFAULTS = ("auto", "", "auto")  # conv_forward's w_spectrum_saving, saved_dtype, ...


def _forward_args(rest) -> Tuple[tuple, tuple]:
    """conv_forward's arguments after bias as (conf, saving): saving is save_x_spectrum,
    save_w_spectrum, then w_spectrum_saving, saved_dtype and x_spectrum_saving, with the defaults
    where they were not passed (torch drops trailing arguments equal to their defaults before it
    calls a fake kernel)."""
    conf, saving = tuple(rest[:6]), tuple(rest[6:])
    return conf, saving + _SAVING_DEFAULTS[len(saving) - 2 :]


@_custom_op(
    "conv_forward",
    f"Tensor x, Tensor weight, Tensor? bias, {_CONF}, bool save_x_spectrum, "
    'bool save_w_spectrum, str w_spectrum_saving="auto", str saved_dtype="", '
    'str x_spectrum_saving="auto"',
    _GRADS,
)
def conv_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], *rest):
    conf, saving = _forward_args(rest)
    return _forward(x, weight, bias, conf, saving)


def _forward(x, weight, bias, conf, saving, handed: Optional[Tensor] = None):
    """conv_forward's outputs; `handed`: x's spectrum at conf's kept set, handed over by the
    energy selection (_select_for_forward; CPU), which forward then takes instead of
    transforming x: the same bits."""
    saved_dtype = saving[3]
    be, stream, (p, c, g), det = _call_setup(
        x, "input", (("weight", weight), ("bias", bias)), (x.shape, weight.shape), conf
    )
    out_dtype, fmt = x.dtype, _layout(x)  # the layout of x as given, as the fake kernel's
    if not _native16(be, x, weight, bias):
        x, weight, bias = _up(x), _up(weight), _up(bias)
    spec = _compute_dtype(x.dtype)  # spectra: float32 for 16-bit tensors
    y = alloc(x, g.output_shape, "output", fmt)
    nx, nw = kept_spectrum_sizes(g, *saving, out_dtype in _HALF)
    ws = alloc(weight, (nw,), "weight spectrum", dtype=spec) if nw else None
    b = None if bias is None else bias.detach().contiguous()
    if handed is None:
        xs = alloc(x, (nx,), "input spectrum", dtype=spec) if nx else None
        be.forward(p, c, dl(x), dl(weight), dl(b), dl(y), dl(xs), dl(ws), *stream, **det)
    else:
        be.forward_with_input_spectrum(p, c, dl(handed), dl(weight), dl(b), dl(y), dl(ws), **det)
        # Kept for backward as conv_forward keeps it (a view: autograd.Function may not save an
        # input returned as it is).
        xs = handed.view_as(handed) if nx else None
    store = SAVED_DTYPES[saved_dtype]
    if store is not None:  # the full-precision spectra are temporaries, freed on return
        xs = None if xs is None else xs.to(store)
        ws = None if ws is None else ws.to(store)
    return (
        y.to(out_dtype),
        (xs if xs is not None else _none(x, spec)),
        (ws if ws is not None else _none(weight, spec)),
    )


@conv_forward.register_fake
def _conv_forward_fake(x, weight, bias, *rest):
    conf, saving = _forward_args(rest)
    saved_dtype = saving[3]
    _, _, g = geometry(x.shape, weight.shape, *conf)
    y = torch.empty(g.output_shape, dtype=x.dtype, device=x.device, memory_format=_layout(x))
    nx, nw = kept_spectrum_sizes(g, *saving, x.dtype in _HALF)
    store = SAVED_DTYPES[saved_dtype] or _compute_dtype(x.dtype)
    return (
        y,
        x.new_empty((nx,), dtype=store if nx else _compute_dtype(x.dtype)),
        weight.new_empty((nw,), dtype=store if nw else _compute_dtype(weight.dtype)),
    )


# ------------------------------------------------------------------------------------------------
# conv_backward
# ------------------------------------------------------------------------------------------------


@_custom_op(
    "conv_backward",
    "Tensor grad_output, Tensor? x, Tensor? x_spectrum, Tensor? weight, Tensor? w_spectrum, "
    f"{_SHAPES}, {_CONF}, {_NEEDS}",
    _GRADS,
)
def conv_backward(grad_output: Tensor, x, x_spectrum, weight, w_spectrum, *shapes_conf_needs):
    out_dtype = grad_output.dtype  # that of x and weight (forward's output has x's dtype)
    shapes, conf, needs = (
        shapes_conf_needs[:2],
        shapes_conf_needs[2:8],
        shapes_conf_needs[8:],
    )
    grads = _backward_impl(grad_output, x, x_spectrum, weight, w_spectrum, shapes, conf, needs)
    return tuple(t.to(out_dtype) if t is not None else _none(grad_output) for t in grads)


def _backward_impl(
    grad_output, x, x_spectrum, weight, w_spectrum, shapes, conf, needs, native16=True
):
    """conv_backward's gradients (None where not asked for) in grad_output's dtype where the
    backend takes it (_native16; not when `native16` is False), else in the computing dtype
    (float32 for half-precision tensors)."""
    need_input_grad, need_weight_grad, need_bias_grad = needs
    # An empty spectrum means "not kept", as in conv_forward's outputs (compiled graphs may pass
    # the empty tensor itself rather than None).
    x_spectrum, w_spectrum = _present(x_spectrum), _present(w_spectrum)
    others = (
        ("x", x),
        ("x_spectrum", x_spectrum),
        ("weight", weight),
        ("w_spectrum", w_spectrum),
    )
    be, stream, (p, c, g), det = _call_setup(grad_output, "grad_output", others, shapes, conf)
    go = grad_output.detach()
    # The layout of x (or grad_output) as given, as the fake kernel's: up-casting a strided
    # channels_last-ordered view makes a dense channels_last copy.
    layout = _layout(x if x is not None else grad_output)
    if not (native16 and _native16(be, go, x, weight)):
        go, x, weight = _up(go), _up(x), _up(weight)
    spec = _compute_dtype(go.dtype)  # spectra: float32 for 16-bit tensors
    xs = ws = None
    if need_weight_grad:
        if x_spectrum is not None:
            xs = x_spectrum.detach().to(spec)  # a no-op unless stored in bfloat16
        elif x is not None:
            xs = alloc(go, (g.x_spectrum_size,), "input spectrum", dtype=spec)
            be.input_spectrum(p, c, dl(x), dl(xs), *stream, **det)
        else:
            raise ValueError("blfft: conv_backward needs x or x_spectrum for the weight gradient")
    w_for_core = None
    if need_input_grad:
        if w_spectrum is not None:
            ws = w_spectrum.detach().to(spec)
        elif weight is not None and is_cpu(be):
            # The CPU core mixes from the weight itself (from its taps, or a spectrum it makes
            # for the call): no weight-sized spectrum is allocated here.
            w_for_core = weight.detach()
        elif weight is not None:
            ws = alloc(go, (g.w_spectrum_size,), "weight spectrum", dtype=spec)
            be.weight_spectrum(p, c, dl(weight), dl(ws), *stream, **det)
        else:
            raise ValueError(
                "blfft: conv_backward needs weight or w_spectrum for the input gradient"
            )
    gx = alloc(go, g.input_shape, "input gradient", layout) if need_input_grad else None
    gw = alloc(go, g.weight_shape, "weight gradient") if need_weight_grad else None
    gb = go.new_empty((g.params.out_channels,)) if need_bias_grad else None
    if gx is not None or gw is not None or gb is not None:
        if w_for_core is not None:
            be.backward(p, c, dl(go), dl(xs), None, dl(gx), dl(gw), dl(gb), dl(w_for_core), **det)
        else:
            be.backward(p, c, dl(go), dl(xs), dl(ws), dl(gx), dl(gw), dl(gb), None, *stream, **det)
    return gx, gw, gb


@conv_backward.register_fake
def _conv_backward_fake(grad_output, x, x_spectrum, weight, w_spectrum, *conf_and_needs):
    # conf_and_needs: conv_backward's arguments from x_shape to band (geometry's), then the three
    # need_*_grad flags.
    *conf, need_input_grad, need_weight_grad, need_bias_grad = conf_and_needs
    _, _, g = geometry(*conf)
    go = grad_output
    layout = _layout(x if x is not None else go)  # as _backward_impl
    return (
        torch.empty(g.input_shape, dtype=go.dtype, device=go.device, memory_format=layout)
        if need_input_grad
        else go.new_empty((0,)),
        go.new_empty(g.weight_shape if need_weight_grad else (0,)),
        go.new_empty((g.params.out_channels,) if need_bias_grad else (0,)),
    )


# ------------------------------------------------------------------------------------------------
# conv_transpose
# ------------------------------------------------------------------------------------------------


@_custom_op(
    "conv_transpose",
    f"Tensor grad_output, Tensor? weight, Tensor? w_spectrum, Tensor? bias, {_SHAPES}, {_CONF}",
    "Tensor",
)
def conv_transpose(grad_output: Tensor, weight, w_spectrum, bias, x_shape, w_shape, *conf):
    """The transposed convolution: the input gradient of the convolution of an x_shape input
    for `grad_output` (from the weight, or a weight spectrum kept by a layer), plus bias (added
    before a half-precision result is rounded)."""
    shapes, needs = (x_shape, w_shape), (True, False, False)
    # With a bias, 16-bit tensors are up-cast: the bias is added before the one rounding.
    gx = _backward_impl(
        grad_output, None, None, weight, w_spectrum, shapes, conf, needs, bias is None
    )[0]
    if bias is not None:
        gx += _up(bias.detach()).reshape((1, -1) + (1,) * (gx.dim() - 2))
    return gx.to(grad_output.dtype)


@conv_transpose.register_fake
def _conv_transpose_fake(grad_output, weight, w_spectrum, bias, x_shape, *rest):
    return torch.empty(
        x_shape,
        dtype=grad_output.dtype,
        device=grad_output.device,
        memory_format=_layout(grad_output),
    )


# ------------------------------------------------------------------------------------------------
# Forward from a kept spectrum (no autograd of their own)
# ------------------------------------------------------------------------------------------------


def _forward_from_w_spectrum(x, w_spectrum, bias, w_shape, conf, keep_x=None):
    """y (in x's dtype) from a weight spectrum computed earlier, and the input spectrum it made
    when `keep_x` (saved_dtype, x_spectrum_saving) says forward keeps it (else None)."""
    be, stream, (p, c, g), det = _call_setup(
        x, "input", (("w_spectrum", w_spectrum), ("bias", bias)), (x.shape, w_shape), conf
    )
    out_dtype, fmt = x.dtype, _layout(x)  # the layout of x as given, as the fake kernel's
    if not _native16(be, x, bias):
        x, bias = _up(x), _up(bias)
    spec = _compute_dtype(x.dtype)  # spectra: float32 for 16-bit tensors
    xs = alloc(x, (g.x_spectrum_size,), "input spectrum", dtype=spec)
    be.input_spectrum(p, c, dl(x), dl(xs), *stream, **det)
    y = alloc(x, g.output_shape, "output", fmt)
    b = None if bias is None else bias.detach().contiguous()
    ws = w_spectrum.detach().to(spec)  # a no-op unless stored in bfloat16
    be.forward_spectra(p, c, dl(xs), dl(ws), dl(b), dl(y), *stream, **det)
    if keep_x is None or not _settings.keep_x_spectrum(g, keep_x[0], keep_x[1]):
        return y.to(out_dtype), None
    store = SAVED_DTYPES[keep_x[0]]
    return y.to(out_dtype), (xs if store is None else xs.to(store))


@_custom_op(
    "conv_forward_cached",
    f"Tensor x, Tensor w_spectrum, Tensor? bias, SymInt[] w_shape, {_CONF}",
    "Tensor",
)
def conv_forward_cached(x: Tensor, w_spectrum: Tensor, bias, w_shape, *conf) -> Tensor:
    """Forward from a weight spectrum computed earlier: inference with a layer's cached weight
    spectrum, and the second-order pass of a layer that kept only its weight spectrum."""
    return _forward_from_w_spectrum(x, w_spectrum, bias, w_shape, conf)[0]


@conv_forward_cached.register_fake
def _conv_forward_cached_fake(x, w_spectrum, bias, w_shape, *conf):
    _, _, g = geometry(x.shape, w_shape, *conf)
    return torch.empty(g.output_shape, dtype=x.dtype, device=x.device, memory_format=_layout(x))


@_custom_op(
    "conv_forward_w_spectrum",
    f"Tensor x, Tensor w_spectrum, Tensor? bias, SymInt[] w_shape, {_CONF}, "
    "bool save_x_spectrum, str saved_dtype, str x_spectrum_saving",
    "(Tensor, Tensor)",
)
def conv_forward_w_spectrum(x: Tensor, w_spectrum: Tensor, bias, w_shape, *rest):
    """conv_forward of a layer whose weight spectrum is cached (training with
    ``cache_weight_spectrum=True``): (y, input spectrum kept for backward or empty)."""
    conf, (save_x, saved_dtype, x_mode) = tuple(rest[:6]), rest[6:]
    keep = (saved_dtype, x_mode) if save_x else None
    y, xs = _forward_from_w_spectrum(x, w_spectrum, bias, w_shape, conf, keep)
    return y, (xs if xs is not None else _none(x, _compute_dtype(x.dtype)))


@conv_forward_w_spectrum.register_fake
def _conv_forward_w_spectrum_fake(x, w_spectrum, bias, w_shape, *rest):
    conf, (save_x, saved_dtype, x_mode) = tuple(rest[:6]), rest[6:]
    _, _, g = geometry(x.shape, w_shape, *conf)
    nx = g.x_spectrum_size if save_x and _settings.keep_x_spectrum(g, saved_dtype, x_mode) else 0
    store = SAVED_DTYPES[saved_dtype] if nx else None
    y = torch.empty(g.output_shape, dtype=x.dtype, device=x.device, memory_format=_layout(x))
    return y, x.new_empty((nx,), dtype=store or _compute_dtype(x.dtype))


@_custom_op(
    "conv_forward_from_x_spectrum",
    f"Tensor x_spectrum, Tensor weight, SymInt[] x_shape, {_CONF}",
    "Tensor",
)
def conv_forward_from_x_spectrum(x_spectrum: Tensor, weight: Tensor, x_shape, *conf) -> Tensor:
    """conv(x, weight) (no bias) from x's kept spectrum: the second-order pass conv(x, ggw) of a
    layer whose forward kept the input spectrum instead of the input. Output in weight's dtype."""
    be, stream, (p, c, g), det = _call_setup(
        weight, "weight", (("x_spectrum", x_spectrum),), (x_shape, weight.shape), conf
    )
    out_dtype = weight.dtype
    if not _native16(be, weight):
        weight = _up(weight)
    spec = _compute_dtype(weight.dtype)  # spectra: float32 for 16-bit tensors
    ws = alloc(weight, (g.w_spectrum_size,), "weight spectrum", dtype=spec)
    be.weight_spectrum(p, c, dl(weight), dl(ws), *stream, **det)
    y = alloc(weight, g.output_shape, "output")
    xs = x_spectrum.detach().to(spec)
    be.forward_spectra(p, c, dl(xs), dl(ws), None, dl(y), *stream, **det)
    return y.to(out_dtype)


@conv_forward_from_x_spectrum.register_fake
def _conv_forward_from_x_spectrum_fake(x_spectrum, weight, x_shape, *conf):
    _, _, g = geometry(x_shape, weight.shape, *conf)
    return weight.new_empty(g.output_shape)


# ------------------------------------------------------------------------------------------------
# Autograd, first and second order (docs/design.md 1.6)
# ------------------------------------------------------------------------------------------------
#
# conv_forward's backward is conv_backward, and conv_backward's is again made of the three passes
# at the same kept set: y = conv(x, w) is bilinear, so for upstream gradients (ggx, ggw, ggb) of
# (gx, gw, gb) = conv_backward(g, x, w):
#   d/dg = conv(ggx, w) + conv(x, ggw) + ggb, d/dx = input_grad(g, ggw), d/dw = weight_grad(ggx, g)
# (the masked transforms are a real orthogonal projection, so each pass is the exact adjoint of
# another). Spectra: a create_graph backward (torch.is_grad_enabled() inside it) computes from x
# and w themselves wherever forward kept them, so its result is differentiable in them and does
# not read a bfloat16-rounded spectrum; forward keeps them beside their spectra when that costs
# no memory (a leaf input: gradient penalties, gradcheck; a weight that requires grad). An
# intermediate activation whose spectrum replaced it is not kept: the second-order graph reads
# that spectrum (the exact derivative of the first derivative as computed from it), and only a
# derivative of its weight gradient toward that activation raises (_InputUnreachable); toward
# anything else (the weight: Hessian-vector products) it is exact.


def _functorch_active() -> bool:
    """Whether a torch.func transform (grad, vjp, vmap, ...) is active. torch runs a custom op's
    registered autograd as an autograd.Function without setup_context, which functorch refuses;
    under a transform the differentiable calls go through the autograd.Functions below."""
    return torch._C._are_functorch_transforms_active()


def _current_modes() -> Tuple[str, str, str]:
    """conv_forward's w_spectrum_saving, saved_dtype and x_spectrum_saving as set now."""
    return (
        get_weight_spectrum_saving(),
        _settings.saved_dtype_name(),
        get_input_spectrum_saving(),
    )


def conv_diff(x: Tensor, weight: Tensor, bias: Optional[Tensor], conf, modes=None) -> Tensor:
    """The band-limited convolution, differentiable (any order) in x, weight and bias. `conf`:
    (stride, padding, dilation, groups, rate, band) as lists; `modes`: conv_forward's saving
    modes (default: the current settings)."""
    conf = tuple(conf)
    if _functorch_active():
        return _ConvFunction.apply(x, weight, bias, conf)
    grad = torch.is_grad_enabled()
    modes = _current_modes() if modes is None else modes
    # The input spectrum serves the weight gradient, the weight spectrum the input gradient.
    save_x, save_w = grad and weight.requires_grad, grad and x.requires_grad
    y = conv_forward(x, weight, bias, *conf, save_x, save_w, *modes)[0]
    if save_x and save_w and not x.is_leaf:
        _link_input(y, x)
    return y


def conv_diff_handed_over(x: Tensor, weight: Tensor, bias, conf, handed: Tensor) -> Tensor:
    """conv_diff for an input whose spectrum at conf's kept set the energy selection handed over
    (_select_for_forward): the same result, gradients and kept state, without the input's
    transform. Eager only (the energy path outside torch.compile and torch.func)."""
    conf = tuple(conf)
    grad = torch.is_grad_enabled()
    save_x, save_w = grad and weight.requires_grad, grad and x.requires_grad
    modes = _current_modes()
    y = _HandedOverFunction.apply(x, weight, bias, conf, handed, save_x, save_w, modes)[0]
    if save_x and save_w and not x.is_leaf:
        _link_input(y, x)
    return y


class _HandedOverFunction(torch.autograd.Function):
    """conv_forward (its outputs, its autograd) from a handed-over input spectrum."""

    @staticmethod
    def forward(x, weight, bias, conf, handed, save_x, save_w, modes):
        return _forward(x, weight, bias, conf, (save_x, save_w) + tuple(modes), handed)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, xs, ws = output
        ctx.mark_non_differentiable(xs, ws)
        _setup_forward(ctx, inputs[0], inputs[1], inputs[3], xs, ws)

    @staticmethod
    def backward(ctx, grad_y, _grad_xs, _grad_ws):
        return _forward_grads(ctx, grad_y) + (None,) * 5


def conv_with_cached_weight(x: Tensor, weight: Tensor, bias: Optional[Tensor], cache, conf):
    """conv_diff for a layer whose weight spectrum `cache` (a WeightSpectrumCache) keeps: forward
    and backward's input gradient read the one spectrum, made once per weight update. Eager,
    float32 / float64, no autocast (:meth:`WeightSpectrumCache.serves_training` says when)."""
    conf = tuple(conf)
    ws = cache.get(x.shape, weight, *conf)
    grad = torch.is_grad_enabled()
    save_x = grad and weight.requires_grad
    modes = _current_modes()
    # Backward reads the spectrum the uncached layer would keep: where its modes keep one in a
    # saved dtype (bfloat16), that rounding of the cached one, so that gradients are its bits.
    ws_back, store = ws, SAVED_DTYPES[modes[1]]
    if store is not None and grad and x.requires_grad:
        _, _, g = geometry(x.shape, weight.shape, *conf)
        if _settings.keep_w_spectrum(g, *modes):
            ws_back = ws.to(store)
    y = _CachedWeightConvFunction.apply(x, weight, bias, ws, conf, save_x, modes[1:], ws_back)[0]
    if save_x and grad and x.requires_grad and not x.is_leaf:
        _link_input(y, x)
    return y


class _CachedWeightConvFunction(torch.autograd.Function):
    """conv_forward from a cached weight spectrum `ws` (not differentiated: the weight's gradient
    comes from conv_backward as in conv_forward's autograd, which reads `ws_back`, `ws` or its
    rounding to the saved dtype, for the input gradient instead of transforming the weight)."""

    @staticmethod
    def forward(x, weight, bias, ws, conf, save_x, modes, ws_back):
        return conv_forward_w_spectrum(x, ws, bias, list(weight.shape), *conf, save_x, *modes)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _, _, conf = inputs[:5]
        ctx.mark_non_differentiable(output[1])
        _setup_forward(ctx, x, weight, conf, output[1], inputs[7])

    @staticmethod
    def backward(ctx, grad_y, _grad_xs):
        return _forward_grads(ctx, grad_y) + (None,) * 5


def conv_backward_diff(g, x, xs, w, ws, conf_full, needs):
    """blfft::conv_backward, differentiable in g, x and w. `conf_full`: (x_shape, w_shape, stride,
    padding, dilation, groups, rate, band); `needs`: the three need_*_grad flags."""
    if _functorch_active():
        return _ConvBackwardFunction.apply(g, x, xs, w, ws, tuple(conf_full), tuple(needs))
    return conv_backward(g, x, xs, w, ws, *conf_full, *needs)


def _setup_forward(ctx, x, weight, conf, xs, ws) -> None:
    """What conv_forward's backward keeps: grad_weight needs the input spectrum or the input,
    grad_input the weight spectrum or the weight; x and w themselves where that costs nothing
    (see the note above)."""
    need_x, need_w, need_b = (bool(v) for v in ctx.needs_input_grad[:3])
    xs, ws = _present(xs), _present(ws)
    keep_x = need_w and (xs is None or (need_x and x.is_leaf))
    keep_w = need_x and (ws is None or need_w)
    ctx.save_for_backward(
        x if keep_x else None,
        xs if need_w else None,
        weight if keep_w else None,
        ws if need_x else None,
    )
    ctx.conf = (list(x.shape), list(weight.shape)) + tuple(conf)
    ctx.needs = (need_x, need_w, need_b)
    ctx.x_unreachable = need_w and need_x and not keep_x
    ctx.x_link = None  # set by conv_diff (see _InputUnreachable)


def _forward_grads(ctx, grad_y) -> Tuple[Optional[Tensor], ...]:
    """(grad_x, grad_weight, grad_bias) of conv_forward (None where not needed)."""
    x, xs, w, ws = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs
    guard = False
    if torch.is_grad_enabled():  # create_graph=True: see the note above
        xs = None if x is not None else xs
        ws = None if w is not None else ws
        guard = ctx.x_unreachable
    gx, gw, gb = conv_backward_diff(grad_y, x, xs, w, ws, ctx.conf, ctx.needs)
    if guard and ctx.x_link is not None:
        gw = gw + _InputUnreachable.apply(ctx.x_link, (tuple(gw.shape), gw.dtype))
    elif guard:  # (an op called directly: no link, the whole weight gradient raises)
        gw = _InputUnreachable.apply(gw, None)
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None)


def _setup_backward(ctx, inputs, output) -> None:
    g, x, xs, w, ws = inputs[:5]
    ctx.conf = tuple(inputs[5:13])  # x_shape, w_shape, stride, padding, dilation, groups, ...
    ctx.needs = tuple(bool(v) for v in inputs[13:16])
    ctx.save_for_backward(g, x, _present(xs), w, _present(ws))


def _backward_grads(ctx, ggx, ggw, ggb) -> Tuple[Optional[Tensor], ...]:
    """(d/dg, d/dx, d/dw) of conv_backward for upstream gradients of its three outputs."""
    g, x, xs, w, ws = ctx.saved_tensors
    x_shape, w_shape, *conf = ctx.conf
    conf = tuple(conf)
    asked = ctx.needs  # which of gx, gw, gb conv_backward computed
    ups = zip((ggx, ggw, ggb), asked, strict=True)
    ggx, ggw, ggb = (_present(t) if a else None for t, a in ups)
    need_g, need_x, need_w = (bool(ctx.needs_input_grad[i]) for i in (0, 1, 3))
    dg = dx = dw = None
    if need_g:
        terms = []
        if ggx is not None:  # conv(ggx, w)
            if w is not None:
                terms.append(conv_diff(ggx, w, None, conf))
            else:
                terms.append(conv_forward_cached(ggx, ws, None, list(w_shape), *conf))
        if ggw is not None:  # conv(x, ggw)
            if x is not None:
                terms.append(conv_diff(x, ggw, None, conf))
            else:
                terms.append(conv_forward_from_x_spectrum(xs, ggw, list(x_shape), *conf))
        if ggb is not None:
            terms.append(ggb.reshape((1, -1) + (1,) * (g.dim() - 2)).expand(g.shape))
        dg = sum(terms[1:], terms[0]) if terms else None
    full = (x_shape, w_shape) + conf
    if need_x and ggw is not None:
        dx = conv_backward_diff(g, None, None, ggw, None, full, (True, False, False))[0]
    if need_w and ggx is not None:
        dw = conv_backward_diff(g, ggx, None, None, None, full, (False, True, False))[1]
    return dg, dx, None, dw, None


def _link_input(y: Tensor, x: Tensor) -> None:
    """Gives conv_forward's autograd node of output `y` the link to its input x that
    _InputUnreachable needs, where forward kept x's spectrum but not x: an empty tensor whose
    history leads to x (x's place in the graph, not its data: a clone of an empty slice, whose
    backward saves only sizes). Made here, not in setup_context, which runs below autograd. Eager
    only: a compiled graph has no second-order backward (aot_autograd refuses double backward)."""
    if torch.compiler.is_compiling():
        return
    node = y.grad_fn
    if getattr(node, "x_unreachable", False):
        node.x_link = x.narrow(0, 0, 0).clone()


class _InputUnreachable(torch.autograd.Function):
    """A zero added, under create_graph, to a weight gradient computed from a kept input spectrum
    whose input requires grad (an activation that forward did not keep). It hangs from the input
    alone (`src`: the link made by :func:`_link_input`), so autograd runs its backward only when
    a derivative toward that input is asked for, which cannot be formed: that raises. Derivatives
    toward anything else (the layer's weight: Hessian-vector products) go through the weight
    gradient's own graph, which is exact; `like`: (shape, dtype) of that gradient (the link has
    the input's dtype, which autocast may have changed). Without a link (`like` None) it is the
    weight gradient itself (`src`), and any derivative of it raises."""

    @staticmethod
    def forward(src, like):
        return src.clone() if like is None else src.new_zeros(like[0], dtype=like[1])

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(
            "blfft: differentiating a weight gradient toward the layer's input needs the input, "
            "but forward kept only its compressed spectrum (it was smaller); call "
            "blfft.set_input_spectrum_saving('recompute') before the forward to keep the input"
        )


def _forward_setup_context(ctx, inputs, output):
    _, xs, ws = output
    ctx.mark_non_differentiable(xs, ws)
    _setup_forward(ctx, inputs[0], inputs[1], inputs[3:9], xs, ws)


def _forward_backward(ctx, grad_y, _grad_xs, _grad_ws):
    # One gradient per argument of conv_forward: only x, weight and bias have one.
    return _forward_grads(ctx, grad_y) + (None,) * 11


def _backward_backward(ctx, ggx, ggw, ggb):
    return _backward_grads(ctx, ggx, ggw, ggb) + (None,) * 11


def conv_transpose_diff(g, weight, bias, conf_full):
    """blfft::conv_transpose from the weight, differentiable (any order) in g, weight and bias.
    `conf_full`: (x_shape, w_shape, stride, padding, dilation, groups, rate, band)."""
    if _functorch_active():
        return _ConvTransposeFunction.apply(g, weight, bias, tuple(conf_full))
    return conv_transpose(g, weight, None, bias, *conf_full)


def _setup_transpose(ctx, g, weight, conf_full) -> None:
    # d/dg needs the weight, d/dweight needs g (the transposed convolution's input).
    need_g, need_w = bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1])
    ctx.save_for_backward(g if need_w else None, weight if need_g else None)
    ctx.conf = tuple(conf_full)


def _transpose_grads(ctx, grad_y, need_g, need_w, need_b):
    """(d/dg, d/dweight, d/dbias) of conv_transpose: the convolution's forward and weight
    gradient for the x_shape input grad_y, and the bias gradient."""
    g, weight = ctx.saved_tensors
    dg = dw = db = None
    if need_g:
        dg = conv_diff(grad_y, weight, None, ctx.conf[2:])
    if need_w:
        dw = conv_backward_diff(g, grad_y, None, None, None, ctx.conf, (False, True, False))[1]
    if need_b:
        db = grad_y.sum([d for d in range(grad_y.dim()) if d != 1])
    return dg, dw, db


def _transpose_setup_context(ctx, inputs, output):
    _setup_transpose(ctx, inputs[0], inputs[1], inputs[4:12])


def _transpose_backward(ctx, grad_y):
    need = ctx.needs_input_grad
    dg, dw, db = _transpose_grads(ctx, grad_y, need[0], need[1], need[3])
    return (dg, dw, None, db) + (None,) * 8


conv_forward.register_autograd(_forward_backward, setup_context=_forward_setup_context)
conv_backward.register_autograd(_backward_backward, setup_context=_setup_backward)
conv_transpose.register_autograd(_transpose_backward, setup_context=_transpose_setup_context)


# ------------------------------------------------------------------------------------------------
# Autocast
# ------------------------------------------------------------------------------------------------
#
# Under torch.autocast the convolutions run in the region's lower precision, as torch's do
# (conv1d/conv2d/conv_transpose* are on autocast's lower-precision list): floating tensor arguments
# of the region's device are cast to its dtype (float32 and the other half type; float64 ones are
# left alone, as torch does), then the op runs with autocast off; it computes half types in
# float32 and returns that dtype. This is
# the rule torch.library.register_autocast registers at the Autocast<device> dispatch key, except
# that the dtype is the region's (torch.get_autocast_dtype), not one fixed at registration:
# torch.autocast("cuda", dtype=torch.bfloat16) gives bfloat16 as F.conv2d does. Kept spectra
# (w_spectrum arguments) are not cast: they are float32 data that the op uses as it is.

_autocast_lib = torch.library.Library("blfft", "FRAGMENT")
# What autocast casts (torch's is_eligible: floating, not float64): the other half type too.
_CASTABLE = (torch.float32, torch.float16, torch.bfloat16)


def _register_autocast(name: str, op, cast_positions) -> None:
    """Registers the rule above for blfft::<name> (`op`), casting the arguments at
    `cast_positions`."""
    for device_type, key in (("cpu", "AutocastCPU"), ("cuda", "AutocastCUDA")):

        def kernel(_keyset, *args, device_type=device_type):
            dtype = torch.get_autocast_dtype(device_type)
            args = list(args)
            for i in cast_positions:
                t = args[i]
                if t is not None and t.device.type == device_type and t.dtype in _CASTABLE:
                    args[i] = t.to(dtype)
            with torch.autocast(device_type, enabled=False):
                return op(*args)

        _autocast_lib.impl(name, kernel, key, with_keyset=True)


_register_autocast("conv_forward", conv_forward, (0, 1, 2))  # x, weight, bias
_register_autocast(
    "conv_forward_cached", conv_forward_cached, (0, 2)
)  # x, bias (not the kept weight spectrum)
_register_autocast("conv_transpose", conv_transpose, (0, 1, 3))  # grad_output, weight, bias


# torch.func transforms: the same formulas as autograd.Functions with setup_context and vmap
# rules. Forward keeps x and w, not spectra: a spectrum's flat layout has no batch axis to map.
#
# vmap rules. A mapped input alone joins the batch axis (one call, the weight shared). Otherwise
# (a mapped weight; per-sample gradients, where the weight gradient is wanted per mapped entry)
# the mapped axis joins the channel axes and the groups: entry b's channels form groups of their
# own, so one grouped call computes every entry exactly (the kept set depends only on the
# spatial sizes). Shared (unmapped) tensors are repeated per entry.


def _fold_channels(t: Optional[Tensor], dim: Optional[int], n: int) -> Optional[Tensor]:
    """(N, C, ...) per entry, mapped at `dim` (None: shared) -> (N, n*C, ...), entry-major."""
    if t is None:
        return None
    t = t.movedim(dim, 1) if dim is not None else t.unsqueeze(1).expand(-1, n, *t.shape[1:])
    return t.flatten(1, 2)


def _fold_leading(t: Optional[Tensor], dim: Optional[int], n: int) -> Optional[Tensor]:
    """A weight (F, ...) or bias (F) per entry, mapped at `dim` (None: shared) -> (n*F, ...)."""
    if t is None:
        return None
    t = t.movedim(dim, 0) if dim is not None else t.expand(n, *t.shape)
    return t.flatten(0, 1)


def _unfold(t: Tensor, axis: int, n: int) -> Tensor:
    """The inverse for an output: (..., n*C at `axis`, ...) -> (n, ..., C, ...)."""
    return t.unflatten(axis, (n, -1)).movedim(axis, 0)


def _grouped(conf, n: int, x_shape=None, w_shape=None):
    """A call's configuration with n times the channels and groups (conf: the ops' (stride,
    padding, dilation, groups, rate, band) tail)."""
    stride, padding, dilation, groups, rate, band = conf
    tail = (stride, padding, dilation, groups * n, rate, band)
    if x_shape is None:
        return tail
    x_shape = [x_shape[0], n * x_shape[1]] + list(x_shape[2:])
    w_shape = [n * w_shape[0]] + list(w_shape[1:])
    return (x_shape, w_shape) + tail


class _ConvFunction(torch.autograd.Function):
    """conv_forward for torch.func transforms."""

    @staticmethod
    def forward(x, weight, bias, conf):
        return conv_forward(x, weight, bias, *conf, False, False)[0]

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _, conf = inputs
        _setup_forward(ctx, x, weight, conf, None, None)

    @staticmethod
    def backward(ctx, grad_y):
        return _forward_grads(ctx, grad_y) + (None,)

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, conf):
        xd, wd, bd, _ = in_dims
        if xd is not None and wd is None and bd is None:
            # Mapped over the input only: the mapped axis joins the batch, one call.
            xb = x.movedim(xd, 0)
            y = _ConvFunction.apply(xb.flatten(0, 1), weight, bias, conf)
            return y.unflatten(0, xb.shape[:2]), 0
        n = info.batch_size
        x, weight, bias = (
            _fold_channels(x, xd, n),
            _fold_leading(weight, wd, n),
            _fold_leading(bias, bd, n),
        )
        return _unfold(_ConvFunction.apply(x, weight, bias, _grouped(conf, n)), 1, n), 0


class _ConvBackwardFunction(torch.autograd.Function):
    """conv_backward for torch.func transforms."""

    @staticmethod
    def forward(g, x, xs, weight, ws, conf_full, needs):
        return conv_backward(g, x, xs, weight, ws, *conf_full, *needs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_backward(ctx, tuple(inputs[:5]) + tuple(inputs[5]) + tuple(inputs[6]), output)

    @staticmethod
    def backward(ctx, ggx, ggw, ggb):
        return _backward_grads(ctx, ggx, ggw, ggb) + (None, None)

    @staticmethod
    def vmap(info, in_dims, g, x, xs, weight, ws, conf_full, needs):
        dims = in_dims[:5]
        only_gx = tuple(needs) == (True, False, False)
        if only_gx and dims[0] is not None and dims[1:] == (None,) * 4:
            # The input gradient alone, for a mapped grad_output: the mapped axis joins the batch.
            gb = g.movedim(dims[0], 0)
            x_shape = [gb.shape[0] * conf_full[0][0]] + list(conf_full[0][1:])
            full = (x_shape,) + tuple(conf_full[1:])
            gx, e1, e2 = _ConvBackwardFunction.apply(
                gb.flatten(0, 1), x, xs, weight, ws, full, needs
            )
            return (gx.unflatten(0, gb.shape[:2]), e1, e2), (0, None, None)
        # (Under torch.func forward keeps no spectra: xs and ws are None here.)
        n = info.batch_size
        full = _grouped(conf_full[2:], n, conf_full[0], conf_full[1])
        gx, gw, gb = _ConvBackwardFunction.apply(
            _fold_channels(g, dims[0], n),
            _fold_channels(x, dims[1], n),
            None,
            _fold_leading(weight, dims[3], n),
            None,
            full,
            needs,
        )
        grads = zip((gx, gw, gb), (1, 0, 0), needs, strict=True)
        outs = tuple(_unfold(t, axis, n) if asked else t for t, axis, asked in grads)
        return outs, tuple(0 if asked else None for asked in needs)


class _ConvTransposeFunction(torch.autograd.Function):
    """conv_transpose for torch.func transforms."""

    @staticmethod
    def forward(g, weight, bias, conf_full):
        return conv_transpose(g, weight, None, bias, *conf_full)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_transpose(ctx, inputs[0], inputs[1], inputs[3])

    @staticmethod
    def backward(ctx, grad_y):
        need = ctx.needs_input_grad
        return _transpose_grads(ctx, grad_y, *need[:3]) + (None,)

    @staticmethod
    def vmap(info, in_dims, g, weight, bias, conf_full):
        gd, wd, bd, _ = in_dims
        if gd is not None and wd is None and bd is None:
            # Mapped over the input only: the mapped axis joins the batch, one call.
            gb = g.movedim(gd, 0)
            x_shape = [gb.shape[0] * conf_full[0][0]] + list(conf_full[0][1:])
            full = (x_shape,) + tuple(conf_full[1:])
            y = _ConvTransposeFunction.apply(gb.flatten(0, 1), weight, bias, full)
            return y.unflatten(0, gb.shape[:2]), 0
        n = info.batch_size
        # conf_full's shapes are the convolution's: x (N, C_out, ...), weight (C_in, ...).
        full = _grouped(conf_full[2:], n, conf_full[0], conf_full[1])
        g, weight, bias = (
            _fold_channels(g, gd, n),
            _fold_leading(weight, wd, n),
            _fold_leading(bias, bd, n),
        )
        return _unfold(_ConvTransposeFunction.apply(g, weight, bias, full), 1, n), 0


# ------------------------------------------------------------------------------------------------
# Energy-based selection (data-dependent: runs eagerly, outside any compiled graph)
# ------------------------------------------------------------------------------------------------


def _select_band(
    x: Tensor,
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    fraction: float,
):
    """Band limits [i_h, i_w] of the largest compression keeping `fraction` of x's energy, and
    the core's EnergySelection.

    For CUDA tensors the energy map is computed on the GPU (blfft::cuda::select_by_energy, which
    synchronises the current stream) and the selection made on the CPU, as for CPU tensors."""
    return _selection(x, w_shape, stride, padding, dilation, groups, fraction, False)[:2]


def _select_for_forward(x: Tensor, w_shape, stride, padding, dilation, groups, fraction):
    """_select_band, and x's spectrum at the chosen kept set for conv_diff_handed_over (the bits
    the forward's own input transform makes: the core's selection transforms with the forward's
    plans), or None where the selection cannot hand it over (CUDA tensors; a band it tried
    beyond the buffer cap)."""
    return _selection(x, w_shape, stride, padding, dilation, groups, fraction, True)


def _selection(x, w_shape, stride, padding, dilation, groups, fraction, hand_over: bool):
    be, stream = backend_for(x, "input")
    x = _up(x)  # half-precision inputs are looked at in float32, as they are computed
    p, _, g = geometry(x.shape, w_shape, stride, padding, dilation, groups, 0.0, ())
    # An output the forward would refuse is refused before the selection, which reads the whole
    # input (an expanded batch of 2**51 samples: minutes).
    check_buffer(x, g.output_shape, "output")
    handed = None
    try:
        if hand_over and is_cpu(be):
            try:
                # The core asks for a buffer per band it transforms; the last one holds the
                # chosen set's spectrum.
                sel, handed = be.select_by_energy_for_forward(
                    p,
                    dl(x),
                    float(fraction),
                    lambda n: alloc(x, (n,), "input spectrum"),
                    **deterministic_kw(be),
                )
            except MemoryError:
                # A band the search tried is beyond the buffer cap (the chosen one may not be):
                # the selection without hand-over, whose forward transforms x itself.
                sel, handed = be.select_by_energy(p, dl(x), float(fraction), *stream), None
        else:
            sel = be.select_by_energy(p, dl(x), float(fraction), *stream)
    except ValueError:
        # A NaN or Inf makes every bin's energy non-finite: no kept set can be chosen (the core
        # refuses it; the input is looked at only then, a pass over it cost 10-35% of the
        # selection).
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                "blfft: energy= needs a finite input, but input is not finite (it contains NaN "
                "or Inf); use compress_rate= instead, or clean the input"
            ) from None
        raise
    return [int(sel.limits[0]), int(sel.limits[1])], sel, handed


select_band = eager_only(_select_band)
select_for_forward = eager_only(_select_for_forward)


# ------------------------------------------------------------------------------------------------
# Energy selection inside the graph (torch.compile)
# ------------------------------------------------------------------------------------------------
#
# The selection is data-dependent, but the output's shape is not: one op selects and convolves,
# so a compiled model in energy mode has no graph break. The choice leaves the op as `info`
# (float64 [i_h, i_w, rate, energy_kept]), which backward reads. Forward keeps x and the weight
# (a spectrum's size would depend on the choice). Eager calls select first and call conv_forward
# with the chosen band instead (spectra kept, torch.func transforms).


@_custom_op(
    "conv_forward_energy",
    f"Tensor x, Tensor weight, Tensor? bias, {_CONV}, float energy",
    "(Tensor, Tensor)",
)
def conv_forward_energy(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups, energy):
    band, sel, handed = _select_for_forward(
        x, weight.shape, stride, padding, dilation, groups, energy
    )
    conf = (stride, padding, dilation, groups, 0.0, band)
    y = _forward(x, weight, bias, conf, (False, False) + _SAVING_DEFAULTS, handed)[0]
    info = [float(band[0]), float(band[1]), float(sel.rate), float(sel.energy_kept)]
    return y, torch.tensor(info, dtype=torch.float64, device=x.device)


@conv_forward_energy.register_fake
def _conv_forward_energy_fake(x, weight, bias, stride, padding, dilation, groups, energy):
    _, _, g = geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    y = torch.empty(g.output_shape, dtype=x.dtype, device=x.device, memory_format=_layout(x))
    return y, x.new_empty((4,), dtype=torch.float64)


@_custom_op(
    "conv_backward_energy",
    f"Tensor grad_output, Tensor? x, Tensor? weight, Tensor info, {_SHAPES}, {_CONV}, {_NEEDS}",
    _GRADS,
)
def conv_backward_energy(grad_output: Tensor, x, weight, info: Tensor, *shapes_conv_needs):
    """conv_backward at the kept set conv_forward_energy chose (`info`)."""
    conf = tuple(shapes_conv_needs[:6]) + (0.0, _band_of(info))
    needs = shapes_conv_needs[6:]
    return conv_backward(grad_output, x, None, weight, None, *conf, *needs)


def _band_of(info: Tensor) -> List[int]:
    return [int(v) for v in info[:2].tolist()]


@conv_backward_energy.register_fake
def _conv_backward_energy_fake(grad_output, x, weight, info, *conf_and_needs):
    *conf, need_x, need_w, need_b = conf_and_needs
    return _conv_backward_fake(
        grad_output, x, None, weight, None, *conf, 0.0, [], need_x, need_w, need_b
    )


def _energy_setup_context(ctx, inputs, output):
    x, weight = inputs[0], inputs[1]
    ctx.mark_non_differentiable(output[1])
    need_x, need_w, need_b = (bool(v) for v in ctx.needs_input_grad[:3])
    ctx.save_for_backward(x if need_w else None, weight if need_x else None, output[1])
    ctx.conf = (list(x.shape), list(weight.shape)) + tuple(inputs[3:7])
    ctx.needs = (need_x, need_w, need_b)


def _energy_backward(ctx, grad_y, _grad_info):
    x, weight, info = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs
    if torch.is_grad_enabled():  # create_graph=True (eager): the differentiable passes
        conf = ctx.conf + (0.0, _band_of(info))
        grads = conv_backward_diff(grad_y, x, None, weight, None, conf, ctx.needs)
    else:
        grads = conv_backward_energy(grad_y, x, weight, info, *ctx.conf, *ctx.needs)
    gx, gw, gb = grads
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None) + (None,) * 5


conv_forward_energy.register_autograd(_energy_backward, setup_context=_energy_setup_context)
_register_autocast("conv_forward_energy", conv_forward_energy, (0, 1, 2))
