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

Every shape comes from the C++ core (``_core.make_geometry``); nothing here re-derives one.
Both ops have fake implementations, so they trace under torch.compile, and an autograd formula.

Backends: CPU tensors go to ``blfft._core``, CUDA tensors to ``blfft._cuda`` (the CUDA backend's
own module, built only where nvcc and cuFFT were found; DESIGN.md 2). The op signatures are the
same for both; each implementation dispatches on the device of its tensors. Every ``_cuda`` call
gets torch's current stream of that device (``torch.cuda.current_stream(device).cuda_stream``),
so the work is ordered with torch's own on that stream; outputs and saved spectra are allocated
by torch on the tensors' device. Without a usable ``_cuda`` (not built, failed to load, or no GPU
it can use), CUDA tensors raise ``blfft.BlfftError`` saying which.
"""

import collections
import functools
import gc
import importlib
import threading
import weakref
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _core

# The CUDA backend's module: optional, and never needed by the CPU path. ModuleNotFoundError for
# blfft._cuda itself means it was not built; any other failure (a missing libcufft.so.12, a
# broken install) is kept for the error message and build_info().
# (import_module, not `from . import _cuda`: that turns a missing module into a plain ImportError.)
_cuda_import_error: Optional[str] = None
try:
    _cuda = importlib.import_module(f"{__package__}._cuda")
except ImportError as _e:
    _cuda = None
    if not (isinstance(_e, ModuleNotFoundError) and _e.name == f"{__package__}._cuda"):
        _cuda_import_error = f"{type(_e).__name__}: {_e}"
    del _e

__all__ = [
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


def _make_geometry(
    x_shape: Tuple[int, ...],
    w_shape: Tuple[int, ...],
    stride: Tuple[int, ...],
    padding: Tuple[int, ...],
    dilation: Tuple[int, ...],
    groups: int,
    rate: float,
    band: Tuple[int, ...],
):
    ndim = len(x_shape) - 2
    n, c = x_shape[0], x_shape[1]
    f = w_shape[0]
    if ndim == 1:
        p = _core.ConvParams.conv1d(
            n, c, f, x_shape[2], w_shape[2], stride[0], padding[0], dilation[0], groups
        )
    elif ndim == 2:
        p = _core.ConvParams.conv2d(
            n, c, f, tuple(x_shape[2:]), tuple(w_shape[2:]), stride, padding, dilation, groups
        )
    else:
        raise ValueError(f"blfft: input must have 1 or 2 spatial dimensions, got {ndim}")
    if band:
        comp = _core.Compression.band(band[0], band[1])
    else:
        comp = _core.Compression.rate(rate)
    return p, comp, _core.make_geometry(p, comp)  # releases the GIL while it works


class _GeometryCache:
    """A least-recently-used cache of ``(ConvParams, Compression, Geometry)`` bounded in entries
    and in bytes.

    A geometry holds its kept row and column indices (8 bytes each): a 1D layer of length L up to
    ~4 L bytes, so a cache bounded in entries alone grows with the lengths seen (the former
    ``lru_cache(4096)`` kept ~270 MiB after 4000 distinct 1D lengths). Each entry is charged an
    upper bound of its index bytes (grid rows + rfft columns) plus a fixed overhead; the least
    recently used entries go once either bound is passed. Thread-safe; the geometry is made
    outside the lock (and without the GIL), so two threads may both make a missing one.
    """

    ENTRY_OVERHEAD = 1024  # the Python and C++ objects of one entry, roughly (bytes)

    def __init__(self, max_entries: int = 512, max_bytes: int = 8 << 20) -> None:
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._d: "collections.OrderedDict" = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _cost(g) -> int:
        grid = g.grid
        return 8 * (int(grid[0]) + int(g.bins_w)) + _GeometryCache.ENTRY_OVERHEAD

    def __call__(self, *key):
        d = self._d
        with self._lock:
            e = d.get(key)
            if e is not None:
                d.move_to_end(key)
                self.hits += 1
                return e[0]
        value = _make_geometry(*key)
        cost = self._cost(value[2])
        with self._lock:
            self.misses += 1
            if key not in d:
                d[key] = (value, cost)
                self._bytes += cost
                while d and (len(d) > self.max_entries or self._bytes > self.max_bytes):
                    _, (_, old_cost) = d.popitem(last=False)
                    self._bytes -= old_cost
        return value

    def cache_clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def cache_info(self) -> dict:
        """hits, misses, entries, bytes (the estimate the bound applies to) and the bounds."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": len(self._d),
                "bytes": self._bytes,
                "max_entries": self.max_entries,
                "max_bytes": self.max_bytes,
            }


_geometry_cached = _GeometryCache()


def geometry(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    rate: float = 0.0,
    band: Sequence[int] = (),
):
    """(ConvParams, Compression, Geometry) for one call, from the C++ core (cached)."""
    return _geometry_cached(
        tuple(int(s) for s in x_shape),
        tuple(int(s) for s in w_shape),
        tuple(int(s) for s in stride),
        tuple(int(s) for s in padding),
        tuple(int(s) for s in dilation),
        int(groups),
        float(rate),
        tuple(int(b) for b in band),
    )


def _keep_x_spectrum(g, saved_dtype: str = "", mode: str = "auto") -> bool:
    # Choose by size (DESIGN.md 2, "Saved state"): keep the compressed input spectrum only when it
    # is not larger (in bytes) than the input itself; otherwise backward recomputes it from the
    # input. set_input_spectrum_saving overrides the choice.
    _check_mode(mode, "x_spectrum_saving")
    if mode != "auto":
        return mode == "keep"
    return g.x_spectrum_size * _saved_ratio(saved_dtype) <= g.input_size


SPECTRUM_SAVING_MODES = ("auto", "keep", "recompute")
_input_spectrum_mode = "auto"


def _check_mode(mode: str, what: str) -> None:
    if mode not in SPECTRUM_SAVING_MODES:
        raise ValueError(
            f"blfft: {what} must be one of "
            f"{', '.join(repr(m) for m in SPECTRUM_SAVING_MODES)}, got {mode!r}"
        )


def set_input_spectrum_saving(mode: str) -> None:
    """Whether forward keeps the compressed input spectrum for the weight gradient.

    - ``"auto"`` (default): keep it when it is smaller than the input (the input is then not
      kept by the layer), else keep the input and recompute the spectrum in backward.
    - ``"recompute"``: always keep the input instead. Right for models where the layer before
      keeps the same tensor anyway (a ReLU keeps its output, a batch norm its input): the
      spectrum would be an extra copy, the input costs nothing more. Backward pays one input
      transform.
    - ``"keep"``: always keep the spectrum (fastest backward).

    Applies to calls made after it; torch.compile'd models see the change and recompile.
    """
    global _input_spectrum_mode
    _check_mode(mode, "mode")
    _input_spectrum_mode = mode


def get_input_spectrum_saving() -> str:
    """The mode set by :func:`set_input_spectrum_saving`."""
    return _input_spectrum_mode


# Storage of the spectra kept for backward: "" = the tensors' own dtype (exact), or "bfloat16"
# (half the bytes; backward computes in the tensors' dtype from the rounded spectra).
SAVED_DTYPES = {"": None, "bfloat16": torch.bfloat16}
_saved_dtype = ""


def _saved_ratio(saved_dtype: str) -> float:
    """Bytes of a saved spectrum element over bytes of a float32 one (what the core computes)."""
    if saved_dtype not in SAVED_DTYPES:
        raise ValueError(
            f"blfft: saved_dtype must be one of {sorted(SAVED_DTYPES)}, got {saved_dtype!r}"
        )
    return 0.5 if saved_dtype == "bfloat16" else 1.0


def set_saved_spectrum_dtype(dtype: Optional[torch.dtype]) -> None:
    """How the compressed spectra kept for backward are stored.

    - ``None`` (default): in the dtype of the layer's tensors; backward is exact (to rounding).
    - ``torch.bfloat16``: rounded to bfloat16 (8 significant bits), as mixed-precision training
      stores activations: half the bytes held for backward, for a relative error of about 0.4%
      in each kept coefficient of the gradients computed from them. Forward is unaffected, and
      backward still computes in float32 / float64.

    Applies to calls made after it; torch.compile'd models see the change and recompile.
    """
    global _saved_dtype
    if dtype is None:
        _saved_dtype = ""
    elif dtype == torch.bfloat16:
        _saved_dtype = "bfloat16"
    else:
        raise ValueError(f"blfft: dtype must be None or torch.bfloat16, got {dtype!r}")


def get_saved_spectrum_dtype() -> Optional[torch.dtype]:
    """The storage set by :func:`set_saved_spectrum_dtype` (None: the tensors' own dtype)."""
    return SAVED_DTYPES[_saved_dtype]


_deterministic = False


def set_deterministic(enabled: bool) -> None:
    """Bitwise-reproducible results on the CPU backend, for any thread count
    (``plan_options::deterministic`` of the C++ plans).

    The CPU backend is then deterministic whenever this is on *or*
    ``torch.use_deterministic_algorithms(True)`` is in effect (read at every call, so it applies
    inside torch.compile'd models too). Off by default: results are then reproducible for a fixed
    thread count only. A deterministic call uses plans of its own (the option is part of the
    plan cache's key). The CUDA backend has no such option.
    """
    global _deterministic
    if not isinstance(enabled, bool):
        raise TypeError(f"blfft: set_deterministic takes a bool, got {enabled!r}")
    _deterministic = enabled


def get_deterministic() -> bool:
    """The setting of :func:`set_deterministic` (not torch's flag)."""
    return _deterministic


def _deterministic_now() -> bool:
    """Whether this call must be deterministic: blfft's setting or torch's."""
    return _deterministic or torch.are_deterministic_algorithms_enabled()


def _det_kw(be) -> dict:
    """The ``deterministic=`` keyword for a CPU backend call (the CUDA module has no such
    option)."""
    return {"deterministic": _deterministic_now()} if be is _core else {}


# The core's cap on one buffer (blfft::get_max_buffer_bytes), mirrored here so that the spectra
# Python allocates for a call are refused before allocation as the core's own buffers are.
_max_buffer_bytes: Optional[int] = None


def _buffer_cap() -> int:
    global _max_buffer_bytes
    if _max_buffer_bytes is None:
        get = getattr(_core, "get_max_buffer_bytes", None)
        _max_buffer_bytes = int(get()) if get is not None else (1 << 62)
    return _max_buffer_bytes


def _alloc(like: Tensor, shape, what: str) -> Tensor:
    """``like.new_empty(shape)`` for a buffer of a call: MemoryError (not torch's RuntimeError)
    when it exceeds the core's buffer cap or the allocation fails."""
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * like.element_size()
    if like.device.type == "cpu" and nbytes > _buffer_cap():
        raise MemoryError(
            f"blfft: the {what} would take {nbytes} bytes, more than the largest buffer allowed "
            f"({_buffer_cap()} bytes, blfft.set_max_buffer_size)"
        )
    try:
        return like.new_empty(shape)
    except RuntimeError as e:
        if like.device.type == "cpu" and "can't allocate memory" in str(e):
            raise MemoryError(f"blfft: could not allocate the {what} ({nbytes} bytes): {e}") from e
        raise


_weight_spectrum_mode = "auto"


def set_weight_spectrum_saving(mode: str) -> None:
    """Whether forward keeps the compressed weight spectrum for the input gradient.

    - ``"auto"`` (default): keep it only while what a layer holds for backward stays within what
      torch's own convolution holds (the input and the weight); otherwise backward recomputes it
      from the weight, one weight transform per step. A weight spectrum is usually far larger
      than the weight (one complex value per kept frequency per filter tap pair: 84x for the
      FCN's 256->128 k3 layer at rate 0.5), so this mostly recomputes, except at large batches.
    - ``"keep"``: always keep it (fastest backward, most memory; the memory does not grow with
      the batch).
    - ``"recompute"``: never keep it (least memory).

    Applies to calls made after it; torch.compile'd models see the change and recompile (the
    mode is an argument of every traced ``blfft::conv_forward``).
    """
    global _weight_spectrum_mode
    _check_mode(mode, "mode")
    _weight_spectrum_mode = mode


def get_weight_spectrum_saving() -> str:
    """The mode set by :func:`set_weight_spectrum_saving`."""
    return _weight_spectrum_mode


def _keep_w_spectrum(
    g, mode: str = "auto", saved_dtype: str = "", x_mode: str = "auto"
) -> bool:
    _check_mode(mode, "w_spectrum_saving")
    if mode != "auto":
        return mode == "keep"
    ratio = _saved_ratio(saved_dtype)
    keep_x = _keep_x_spectrum(g, saved_dtype, x_mode)
    x_held = g.x_spectrum_size * ratio if keep_x else g.input_size
    return x_held + g.w_spectrum_size * ratio <= g.input_size + g.weight_size


def _eager_only(fn):
    """``torch.compiler.disable(fn)``, applied on the first call: torch.compiler.disable imports
    torch._dynamo, which would double the time of ``import blfft`` (seconds) for programs that
    never compile. A program that compiles has imported dynamo before tracing reaches us."""
    disabled = None

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        nonlocal disabled
        if disabled is None:
            disabled = torch.compiler.disable(fn)
        return disabled(*args, **kwargs)

    return inner


def _unsupported(message: str) -> Exception:
    e = _core.BlfftError(message)
    e.code = "unsupported"
    return e


_cuda_devices: Optional[int] = None


def cuda_device_count() -> int:
    """CUDA devices the CUDA backend can use (0: not built, no driver or no GPU). Cached."""
    global _cuda_devices
    if _cuda_devices is None:
        _cuda_devices = int(_cuda.device_count()) if _cuda is not None else 0
    return _cuda_devices


def cuda_unusable_reason() -> Optional[str]:
    """Why CUDA tensors cannot run here, or None when they can."""
    if _cuda is None:
        if _cuda_import_error is not None:
            return f"CUDA backend built but blfft._cuda failed to load ({_cuda_import_error})"
        return "CUDA backend not built (this build of blfft runs on the CPU only)"
    if cuda_device_count() == 0:
        return (
            "CUDA backend built, but no GPU usable by it (its device_count() is 0: no GPU, no "
            "driver, or a driver older than the CUDA runtime blfft was built with)"
        )
    return None


def _check_device(t: Tensor, name: str) -> None:
    """Raises BlfftError unless t is on a device blfft computes on (the CPU, or a CUDA device
    with a usable CUDA backend)."""
    kind = t.device.type
    if kind == "cpu":
        return
    if kind == "cuda":
        if torch.compiler.is_compiling():
            # Dynamo cannot trace the binding's device_count(); the op implementations, which
            # run eagerly inside compiled graphs, check again through _backend.
            return
        reason = cuda_unusable_reason()
        if reason is not None:
            raise _unsupported(f"blfft: {name} is on {t.device}: {reason}")
        return
    raise _unsupported(f"blfft: {name} is on {t.device}; blfft runs on the CPU and on CUDA devices")


def _backend(t: Tensor, name: str, *others: Tuple[str, Optional[Tensor]]):
    """(module, trailing args) for a call on t's device: (_core, ()) for CPU tensors, (_cuda,
    (stream,)) for CUDA ones, the stream being torch's current stream on that device. `others`
    ((name, tensor or None) pairs) must be on the same device."""
    _check_device(t, name)
    for other_name, o in others:
        if o is not None and o.device != t.device:
            raise TypeError(f"blfft: {other_name} is on {o.device} but {name} is on {t.device}")
    if t.device.type == "cuda":
        return _cuda, (torch.cuda.current_stream(t.device).cuda_stream,)
    return _core, ()


_to_dlpack = torch.utils.dlpack.to_dlpack


def _dl(t: Optional[Tensor]):
    """A DLPack capsule of `t` (None stays None) for the binding.

    torch's C-level exporter makes a legacy capsule in about 1 us; Tensor.__dlpack__ (which the
    binding would otherwise call, asking for a versioned one) spends several more in Python-level
    checks, for every tensor of every call. The binding takes both kinds alike.
    """
    return None if t is None else _to_dlpack(t.detach())


def _empty(like: Tensor) -> Tensor:
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
    be, stream = _backend(x, "input", ("weight", weight), ("bias", bias))
    p, c, g = geometry(x.shape, weight.shape, stride, padding, dilation, groups, rate, band)
    y = _alloc(x, g.output_shape, "output")
    keep_x = save_x_spectrum and _keep_x_spectrum(g, saved_dtype, x_spectrum_saving)
    keep_w = save_w_spectrum and _keep_w_spectrum(
        g, w_spectrum_saving, saved_dtype, x_spectrum_saving
    )
    xs = _alloc(x, (g.x_spectrum_size,), "input spectrum") if keep_x else None
    ws = _alloc(weight, (g.w_spectrum_size,), "weight spectrum") if keep_w else None
    b = None if bias is None else bias.detach().contiguous()
    be.forward(
        p, c, _dl(x), _dl(weight), _dl(b), _dl(y), _dl(xs), _dl(ws), *stream, **_det_kw(be)
    )
    store = SAVED_DTYPES[saved_dtype]
    if store is not None:  # the full-precision spectra are temporaries, freed on return
        xs = None if xs is None else xs.to(store)
        ws = None if ws is None else ws.to(store)
    return y, (xs if xs is not None else _empty(x)), (ws if ws is not None else _empty(weight))


@conv_forward.register_fake
def _conv_forward_fake(
    x,
    weight,
    bias,
    stride,
    padding,
    dilation,
    groups,
    rate,
    band,
    save_x_spectrum,
    save_w_spectrum,
    w_spectrum_saving="auto",
    saved_dtype="",
    x_spectrum_saving="auto",
):
    _, _, g = geometry(x.shape, weight.shape, stride, padding, dilation, groups, rate, band)
    y = x.new_empty(g.output_shape)
    keep_x = save_x_spectrum and _keep_x_spectrum(g, saved_dtype, x_spectrum_saving)
    keep_w = save_w_spectrum and _keep_w_spectrum(
        g, w_spectrum_saving, saved_dtype, x_spectrum_saving
    )
    nx = g.x_spectrum_size if keep_x else 0
    nw = g.w_spectrum_size if keep_w else 0
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
    x_shape, w_shape, stride, padding, dilation, groups, rate, band = ctx.conf
    gx, gw, gb = conv_backward(
        grad_y,
        x,
        xs,
        w,
        ws,
        x_shape,
        w_shape,
        stride,
        padding,
        dilation,
        groups,
        rate,
        band,
        bool(need_x),
        bool(need_w),
        bool(need_b),
    )
    return (
        gx if need_x else None,
        gw if need_w else None,
        gb if need_b else None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )


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
    be, stream = _backend(
        grad_output,
        "grad_output",
        ("x", x),
        ("x_spectrum", x_spectrum),
        ("weight", weight),
        ("w_spectrum", w_spectrum),
    )
    p, c, g = geometry(x_shape, w_shape, stride, padding, dilation, groups, rate, band)
    go = grad_output.detach()
    det = _det_kw(be)
    xs = ws = None
    if need_weight_grad:
        if x_spectrum is not None:
            xs = x_spectrum.detach().to(go.dtype)  # a no-op unless stored in bfloat16
        elif x is not None:
            xs = _alloc(go, (g.x_spectrum_size,), "input spectrum")
            be.input_spectrum(p, c, _dl(x), _dl(xs), *stream, **det)
        else:
            raise ValueError("blfft: conv_backward needs x or x_spectrum for the weight gradient")
    w_for_core = None
    if need_input_grad:
        if w_spectrum is not None:
            ws = w_spectrum.detach().to(go.dtype)
        elif weight is not None and be is _core:
            # The CPU core mixes from the weight itself (from its taps, or a spectrum it makes
            # for the call): no weight-sized spectrum is allocated here.
            w_for_core = weight.detach()
        elif weight is not None:
            ws = _alloc(go, (g.w_spectrum_size,), "weight spectrum")
            be.weight_spectrum(p, c, _dl(weight), _dl(ws), *stream, **det)
        else:
            raise ValueError(
                "blfft: conv_backward needs weight or w_spectrum for the input gradient"
            )
    gx = _alloc(go, g.input_shape, "input gradient") if need_input_grad else None
    gw = _alloc(go, g.weight_shape, "weight gradient") if need_weight_grad else None
    gb = go.new_empty((g.params.out_channels,)) if need_bias_grad else None
    if gx is not None or gw is not None or gb is not None:
        if w_for_core is not None:
            be.backward(
                p, c, _dl(go), _dl(xs), None, _dl(gx), _dl(gw), _dl(gb), _dl(w_for_core), **det
            )
        else:
            be.backward(
                p, c, _dl(go), _dl(xs), _dl(ws), _dl(gx), _dl(gw), _dl(gb), *stream, **det
            )
    return (
        gx if gx is not None else _empty(go),
        gw if gw is not None else _empty(go),
        gb if gb is not None else _empty(go),
    )


@conv_backward.register_fake
def _conv_backward_fake(
    grad_output,
    x,
    x_spectrum,
    weight,
    w_spectrum,
    x_shape,
    w_shape,
    stride,
    padding,
    dilation,
    groups,
    rate,
    band,
    need_input_grad,
    need_weight_grad,
    need_bias_grad,
):
    _, _, g = geometry(x_shape, w_shape, stride, padding, dilation, groups, rate, band)
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
    be, stream = _backend(x, "input", ("w_spectrum", w_spectrum), ("bias", bias))
    p, c, g = geometry(x.shape, w_shape, stride, padding, dilation, groups, rate, band)
    det = _det_kw(be)
    xs = _alloc(x, (g.x_spectrum_size,), "input spectrum")
    be.input_spectrum(p, c, _dl(x), _dl(xs), *stream, **det)
    y = _alloc(x, g.output_shape, "output")
    b = None if bias is None else bias.detach().contiguous()
    be.forward_spectra(p, c, _dl(xs), _dl(w_spectrum), _dl(b), _dl(y), *stream, **det)
    return y


@conv_forward_cached.register_fake
def _conv_forward_cached_fake(
    x, w_spectrum, bias, w_shape, stride, padding, dilation, groups, rate, band
):
    _, _, g = geometry(x.shape, w_shape, stride, padding, dilation, groups, rate, band)
    return x.new_empty(g.output_shape)


_BITS_OF = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether a and b (same shape and dtype) hold the same values bit for bit (NaNs with the
    same payload equal, -0.0 and 0.0 differ)."""
    bits = _BITS_OF.get(a.element_size())
    if bits is None or a.is_complex():
        return torch.equal(a, b)
    return torch.equal(a.view(bits), b.view(bits))


# Every live WeightSpectrumCache, so that blfft.clear_caches() can empty them.
_weight_caches: "weakref.WeakSet[WeightSpectrumCache]" = weakref.WeakSet()
_weight_caches_lock = threading.Lock()


class WeightSpectrumCache:
    """One layer's compressed weight spectrum, kept between inference calls.

    The spectrum depends on the weight's values, the grid (input size, padding), the kept set and
    the dtype and device, not on the batch. The entry is reused only while all of these are the
    same: the cache keeps a copy of the weight it was made from and compares it bit for bit with
    the weight of every call (``torch.equal`` on the integer view). A version counter would not
    do: writes through ``weight.data`` (``m.weight.data.mul_(2)``, optimizers that update
    ``p.data``) do not move the parameter's counter, and a different tensor object or storage
    may hold the same values or other ones. The comparison reads the weight once, far less work
    than its transform (each tap goes into every kept frequency), and the copy costs the weight's
    memory, small against the spectrum's. Not pickled; emptied by :func:`blfft.clear_caches`.
    """

    def __init__(self) -> None:
        self._entry = None
        self.hits = 0
        self.misses = 0
        with _weight_caches_lock:
            _weight_caches.add(self)

    def clear(self) -> None:
        self._entry = None

    def __getstate__(self):
        return {"_entry": None, "hits": 0, "misses": 0}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        with _weight_caches_lock:
            _weight_caches.add(self)

    @property
    def nbytes(self) -> int:
        """Bytes held: the spectrum and the copy of the weight it was made from."""
        e = self._entry
        if e is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (e[1], e[2]))

    @_eager_only
    def get(self, x_shape, weight: Tensor, stride, padding, dilation, groups, rate, band) -> Tensor:
        be, stream = _backend(weight, "weight")
        det = _det_kw(be)
        shape = (1,) + tuple(int(s) for s in x_shape[1:])
        key = (
            shape,
            tuple(weight.shape),
            weight.dtype,
            weight.device,
            tuple(stride),
            tuple(padding),
            tuple(dilation),
            int(groups),
            float(rate),
            tuple(band),
            bool(det.get("deterministic", False)),
        )
        w = weight.detach()
        e = self._entry
        if e is not None and e[0] == key and _same_bits(e[1], w):
            self.hits += 1
            return e[2]
        self.misses += 1
        self._entry = None  # let the old spectrum go before the new one is allocated
        p, c, g = geometry(shape, weight.shape, stride, padding, dilation, groups, rate, band)
        ws = _alloc(w, (g.w_spectrum_size,), "weight spectrum")
        snapshot = w.clone(memory_format=torch.contiguous_format)
        be.weight_spectrum(p, c, _dl(snapshot), _dl(ws), *stream, **det)
        self._entry = (key, snapshot, ws)
        return ws


# ------------------------------------------------------------------------------------------------
# Energy-based selection (data-dependent: runs eagerly, outside any compiled graph)
# ------------------------------------------------------------------------------------------------


@_eager_only
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
    be, stream = _backend(x, "input")
    if not bool(torch.isfinite(x).all()):
        # A NaN or Inf makes every bin's energy non-finite: no kept set can be chosen.
        raise ValueError(
            "blfft: energy= needs a finite input, but input is not finite (it contains NaN or "
            "Inf); use compress_rate= instead, or clean the input"
        )
    p, _, _ = geometry(x.shape, w_shape, stride, padding, dilation, groups, 0.0, ())
    sel = be.select_by_energy(p, _dl(x), float(fraction), *stream)
    return [int(sel.limits[0]), int(sel.limits[1])], sel


# ------------------------------------------------------------------------------------------------
# Memory held between calls
# ------------------------------------------------------------------------------------------------


_libc_malloc_trim = None


def _malloc_trim() -> None:
    """glibc's malloc_trim(0): hands the free pages of every malloc arena back to the OS. Without
    it, the buffers just freed stay in the process (glibc keeps freed heap memory for reuse; the
    measured difference after a large 2D call: 60-130 MiB against 3 MiB). No-op elsewhere."""
    global _libc_malloc_trim
    if _libc_malloc_trim is None:
        try:
            import ctypes

            _libc_malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _libc_malloc_trim = False
    if _libc_malloc_trim:
        _libc_malloc_trim(0)


def clear_caches() -> None:
    """Releases what blfft holds between calls (see blfft.clear_caches)."""
    _geometry_cached.cache_clear()
    with _weight_caches_lock:
        caches = list(_weight_caches)
    for c in caches:
        c.clear()
    release = getattr(_core, "release_memory", None)
    if release is not None:
        release()
    else:  # a core without release_memory (older build): at least the plans
        _core.clear_plan_cache()
    if _cuda is not None and cuda_device_count() > 0:  # no device: it holds nothing
        _cuda.clear_plan_cache()
    gc.collect()  # layers' spectra and geometries no longer referenced
    _malloc_trim()
