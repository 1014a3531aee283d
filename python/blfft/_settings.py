"""Process-wide settings read by every call: what forward keeps for backward, how it is stored,
and determinism.

The saving settings are read by ``blfft.functional`` at each call and passed to
``blfft::conv_forward`` as arguments, so that they are part of every traced graph (a change makes
torch.compile'd models recompile). :func:`kept_spectrum_sizes` is the one place that decides,
from a layer's geometry and these settings, which compressed spectra forward keeps (docs/design.md
2.6); the op and its fake kernel both ask it.
"""

from typing import Optional, Tuple

import torch

from . import _backends

# ------------------------------------------------------------------------------------------------
# Saving modes
# ------------------------------------------------------------------------------------------------

SPECTRUM_SAVING_MODES = ("auto", "keep", "recompute")
_input_spectrum_mode = "auto"
_weight_spectrum_mode = "auto"


def check_mode(mode: str, what: str) -> None:
    """ValueError unless `mode` is one of :data:`SPECTRUM_SAVING_MODES`."""
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
    check_mode(mode, "mode")
    _input_spectrum_mode = mode


def get_input_spectrum_saving() -> str:
    """The mode set by :func:`set_input_spectrum_saving`."""
    return _input_spectrum_mode


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
    check_mode(mode, "mode")
    _weight_spectrum_mode = mode


def get_weight_spectrum_saving() -> str:
    """The mode set by :func:`set_weight_spectrum_saving`."""
    return _weight_spectrum_mode


# ------------------------------------------------------------------------------------------------
# Storage of the kept spectra
# ------------------------------------------------------------------------------------------------

# Storage of the spectra kept for backward: "" = the tensors' own dtype (exact), or "bfloat16"
# (half the bytes; backward computes in the tensors' dtype from the rounded spectra).
SAVED_DTYPES = {"": None, "bfloat16": torch.bfloat16}
_saved_dtype = ""


def saved_ratio(saved_dtype: str) -> float:
    """Bytes of a saved spectrum element over bytes of a float32 one (what the core computes)."""
    if saved_dtype not in SAVED_DTYPES:
        raise ValueError(
            f"blfft: saved_dtype must be one of {sorted(SAVED_DTYPES)}, got {saved_dtype!r}"
        )
    return 0.5 if saved_dtype == "bfloat16" else 1.0


def set_saved_spectrum_dtype(dtype: Optional[torch.dtype]) -> None:
    """How the compressed spectra kept for backward are stored.

    - ``None`` (default): in the dtype the layer computes in (its tensors' dtype; float32 for
      float16 and bfloat16 layers); backward is exact (to rounding).
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


def saved_dtype_name() -> str:
    """The storage as the ops take it: "" (the tensors' dtype) or "bfloat16"."""
    return _saved_dtype


# ------------------------------------------------------------------------------------------------
# What forward keeps (the one decision, for the op and its fake kernel)
# ------------------------------------------------------------------------------------------------


def _spectrum_ratio(saved_dtype: str, half: bool) -> float:
    """Bytes of a saved spectrum element over bytes of a tensor element. Half-precision tensors
    (float16, bfloat16) are computed in float32: their spectra take twice their bytes."""
    return saved_ratio(saved_dtype) * (2.0 if half else 1.0)


def keep_x_spectrum(g, saved_dtype: str = "", mode: str = "auto", half: bool = False) -> bool:
    """Whether forward keeps the compressed input spectrum of a call with geometry `g` (`half`:
    the tensors are float16 or bfloat16).

    By size (docs/design.md 2.6): in "auto" mode, only when it is not larger (in bytes) than the
    input itself; otherwise backward recomputes it from the input."""
    check_mode(mode, "x_spectrum_saving")
    if mode != "auto":
        return mode == "keep"
    return g.x_spectrum_size * _spectrum_ratio(saved_dtype, half) <= g.input_size


def keep_w_spectrum(
    g, mode: str = "auto", saved_dtype: str = "", x_mode: str = "auto", half: bool = False
) -> bool:
    """Whether forward keeps the compressed weight spectrum of a call with geometry `g`.

    In "auto" mode, only while what the layer holds for backward (the input or its spectrum, and
    this spectrum) stays within what torch's convolution holds (the input and the weight)."""
    check_mode(mode, "w_spectrum_saving")
    if mode != "auto":
        return mode == "keep"
    ratio = _spectrum_ratio(saved_dtype, half)
    keep_x = keep_x_spectrum(g, saved_dtype, x_mode, half)
    x_held = g.x_spectrum_size * ratio if keep_x else g.input_size
    return x_held + g.w_spectrum_size * ratio <= g.input_size + g.weight_size


def kept_spectrum_sizes(
    g,
    save_x_spectrum: bool,
    save_w_spectrum: bool,
    w_spectrum_saving: str,
    saved_dtype: str,
    x_spectrum_saving: str,
    half: bool = False,
) -> Tuple[int, int]:
    """Elements of the input and weight spectra forward keeps (0: not kept). `save_*` say
    whether backward will need them at all (a gradient that needs them is asked for); `half`:
    the tensors are float16 or bfloat16 (their spectra are float32)."""
    keep_x = save_x_spectrum and keep_x_spectrum(g, saved_dtype, x_spectrum_saving, half)
    keep_w = save_w_spectrum and keep_w_spectrum(
        g, w_spectrum_saving, saved_dtype, x_spectrum_saving, half
    )
    return (g.x_spectrum_size if keep_x else 0), (g.w_spectrum_size if keep_w else 0)


# ------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------

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


def deterministic_now() -> bool:
    """Whether this call must be deterministic: blfft's setting or torch's."""
    return _deterministic or torch.are_deterministic_algorithms_enabled()


def deterministic_kw(backend) -> dict:
    """The keywords of a compute call of `backend`: ``deterministic=`` for the CPU core (the CUDA
    module has no such option), ``tf32=`` for the CUDA module (:func:`_backends.tf32_kw`)."""
    if _backends.is_cpu(backend):
        return {"deterministic": deterministic_now()}
    return _backends.tf32_kw(backend)
