"""The band-limited convolution behind ``blfft.functional`` and ``blfft.nn``: argument checks,
torch's conventions (padding modes, unbatched inputs, empty batches, 1x1 kernels at rate 0),
energy-based selection, and the call of the ops (``blfft._ops``).
"""

import numbers
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _ops
from ._backends import check_device
from ._geometry import geometry
from ._weight_cache import WeightSpectrumCache

_IntOrTuple = Union[int, Sequence[int]]
# float16 and bfloat16 are computed in float32 and rounded once: blfft._cuda reads and writes them
# itself, the CPU core's calls up-cast them (blfft._ops._native16).
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class CallRecord(NamedTuple):
    """What one call computed, in the core's terms (for compression reports)."""

    x_shape: Tuple[int, ...]  # the input as the core saw it (after explicit 'same' padding)
    w_shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    groups: int
    # In energy mode under torch.compile, rate, band and energy_kept are tensors (the choice is
    # made inside the compiled graph); float() / int() read them.
    rate: float  # the requested rate; in energy mode the rate the selection chose
    band: Tuple[int, ...]  # band limits chosen by energy selection; () in rate mode
    energy: Optional[float]
    energy_kept: Optional[float]  # fraction of the energy the chosen set holds (energy mode)


def _as_tuple(value, ndim: int, name: str, fn: str, minimum: int) -> Tuple[int, ...]:
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and len(value) in (1, ndim) and all(map(is_int, value)):
        values = tuple(int(v) for v in value) * (ndim if len(value) == 1 else 1)
    else:
        raise TypeError(
            f"blfft.{fn}: {name} must be an int or a tuple of {ndim} int(s), got {value!r}"
        )
    for v in values:
        if v < minimum:
            raise ValueError(f"blfft.{fn}: {name} must be >= {minimum}, got {value!r}")
    return values


def check_rate(rate, fn: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"blfft.{fn}: compress_rate must be a float in [0, 1), got {rate!r}")
    rate = float(rate)
    # (The comparisons refuse NaN and infinities too; math.isfinite would stop torch.compile's
    # dynamic=True, which traces a module's float attributes as symbolic floats.)
    if not (0.0 <= rate < 1.0):
        raise ValueError(f"blfft.{fn}: compress_rate must be in [0, 1), got {rate!r}")
    return rate


def check_energy(energy, fn: str) -> Optional[float]:
    if energy is None:
        return None
    if isinstance(energy, bool) or not isinstance(energy, numbers.Real):
        raise TypeError(f"blfft.{fn}: energy must be None or a float in (0, 1], got {energy!r}")
    energy = float(energy)
    if not (0.0 < energy <= 1.0):  # (NaN and infinities too, as in check_rate)
        raise ValueError(f"blfft.{fn}: energy must be in (0, 1], got {energy!r}")
    return energy


def _check_tensors(fn: str, ndim: int, input, weight, bias, groups: int = 1) -> bool:
    """Validates types, dtypes, devices, ranks and the bias size; returns whether batched.
    `groups` > 0 for a convolution; for a transposed one, -groups (its weight is (in_channels,
    out_channels/groups, ...) and its bias has out_channels entries)."""
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"blfft.{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(
            f"blfft.{fn}: bias must be a torch.Tensor or None, got {type(bias).__name__}"
        )
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"blfft.{fn}: input must be float32 or float64, got {input.dtype} (float16 and "
            f"bfloat16 are taken too, computed in float32)"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        # Under torch.autocast the ops cast float32 tensors to the region's dtype (as torch's
        # convolutions do), so a float32 weight meets a half-precision activation.
        if t.dtype != input.dtype and not _autocast_casts(input, t):
            raise TypeError(
                f"blfft.{fn}: {name} has dtype {t.dtype} but input has dtype {input.dtype}"
            )
        if t.device != input.device:
            raise TypeError(f"blfft.{fn}: {name} is on {t.device} but input is on {input.device}")
    if input.device.type != "meta":  # meta tensors only ask for shapes (the fake kernels)
        check_device(input, "input")
    if input.dim() not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"blfft.{fn}: input must have {ndim + 2} dimensions (N, C, {_spatial(ndim)}) or "
            f"{ndim + 1} (unbatched), got shape {tuple(input.shape)}"
        )
    transposed = groups < 0
    if weight.dim() != ndim + 2:
        channels = (
            "in_channels, out_channels/groups" if transposed else "out_channels, in_channels/groups"
        )
        raise ValueError(
            f"blfft.{fn}: weight must have {ndim + 2} dimensions ({channels}, {_spatial(ndim)}), "
            f"got shape {tuple(weight.shape)}"
        )
    out_channels = weight.shape[1] * -groups if transposed else weight.shape[0]
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_channels):
        raise ValueError(
            f"blfft.{fn}: bias must have shape ({out_channels},) (out_channels), got "
            f"{tuple(bias.shape)}"
        )
    return input.dim() == ndim + 2


def _refuse_forward_ad(fn: str, *tensors) -> None:
    """NotImplementedError for dual tensors (torch.autograd.forward_ad): the ops have no
    forward-mode formula, and torch would drop the tangents silently."""
    if getattr(torch.autograd.forward_ad, "_current_level", -1) < 0:
        return
    for t in tensors:
        if t is not None and torch.autograd.forward_ad.unpack_dual(t).tangent is not None:
            raise NotImplementedError(
                f"blfft.{fn}: forward-mode AD (torch.autograd.forward_ad, torch.func.jvp) is not "
                f"supported; use reverse mode (backward, torch.func.vjp / grad)"
            )


def _check_groups(groups, fn: str) -> int:
    """groups as an int; TypeError for a non-int (bools included), ValueError below 1."""
    is_int = isinstance(groups, numbers.Integral) and not isinstance(groups, bool)
    if is_int and groups >= 1:
        return int(groups)
    if is_int:
        raise ValueError(f"blfft.{fn}: groups must be >= 1, got {groups!r}")
    raise TypeError(f"blfft.{fn}: groups must be a positive int, got {groups!r}")


def _autocast_casts(input: Tensor, t: Tensor) -> bool:
    """Whether an autocast region on input's device makes t's and input's dtypes agree."""
    kind = input.device.type
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        return False
    # torch casts every floating tensor but a float64 one (autocast's is_eligible).
    return {input.dtype, t.dtype} <= {torch.float32, torch.float16, torch.bfloat16}


def _output_dtype(input: Tensor) -> torch.dtype:
    """The dtype of the ops' output for `input`: an autocast region's on input's device (float64
    excepted, as torch does), else input's (for the empty-batch results made here)."""
    kind = input.device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        if input.dtype in (torch.float32, torch.float16, torch.bfloat16):
            return torch.get_autocast_dtype(kind)
    return input.dtype


def _spatial(ndim: int) -> str:
    return ("L", "H, W", "D, H, W")[ndim - 1]


def conv(
    ndim: int,
    fn: str,
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: _IntOrTuple,
    padding: Union[str, _IntOrTuple],
    dilation: _IntOrTuple,
    groups: int,
    compress_rate: float,
    energy: Optional[float],
    weight_cache: Optional[WeightSpectrumCache] = None,
) -> Tuple[Tensor, CallRecord]:
    """The band-limited convolution of `ndim` spatial axes for blfft.functional and blfft.nn
    (`fn` names the caller in error messages), and the record of what it computed."""
    groups = _check_groups(groups, fn)
    batched = _check_tensors(fn, ndim, input, weight, bias)
    _refuse_forward_ad(fn, input, weight, bias)
    stride_t = _as_tuple(stride, ndim, "stride", fn, 1)
    dilation_t = _as_tuple(dilation, ndim, "dilation", fn, 1)
    rate = check_rate(compress_rate, fn)
    energy = check_energy(energy, fn)
    if energy is not None and ndim == 3:
        raise NotImplementedError(
            f"blfft.{fn}: energy-based compression is not supported for 3D convolutions; use "
            f"compress_rate"
        )
    if energy is not None and rate != 0.0:
        raise ValueError(
            f"blfft.{fn}: give either compress_rate ({rate}) or energy ({energy}), not both"
        )

    x = input if batched else input.unsqueeze(0)
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    if out_channels % groups != 0:
        raise ValueError(
            f"blfft.{fn}: weight has {out_channels} output channels, not divisible by "
            f"groups={groups}"
        )
    if x.shape[1] != in_per_group * groups:
        raise ValueError(
            f"blfft.{fn}: input has {x.shape[1]} channels but weight of shape "
            f"{tuple(weight.shape)} with groups={groups} expects {in_per_group * groups}"
        )
    kernel = tuple(weight.shape[2:])

    if isinstance(padding, str):
        if padding == "valid":
            padding_t = (0,) * ndim
        elif padding == "same":
            if any(s != 1 for s in stride_t):
                raise ValueError(
                    f"blfft.{fn}: padding='same' is not supported for strided convolutions "
                    f"(stride={stride_t})"
                )
            total = [d * (k - 1) for d, k in zip(dilation_t, kernel)]
            padding_t = tuple(t // 2 for t in total)
            extra = [t - 2 * (t // 2) for t in total]
            if any(extra):
                # As torch does: an odd total padding puts the extra zero on the far side. The
                # core pads symmetrically, so the extra one is added here.
                pad_spec: List[int] = []
                for e in reversed(extra):
                    pad_spec += [0, e]
                x = F.pad(x, pad_spec)
        else:
            raise ValueError(
                f"blfft.{fn}: padding must be 'same', 'valid', an int or a tuple of {ndim} ints, "
                f"got {padding!r}"
            )
    else:
        padding_t = _as_tuple(padding, ndim, "padding", fn, 0)

    band: List[int] = []
    energy_kept = None
    chosen_rate = rate
    if x.shape[0] == 0:
        y = _empty_batch(x, weight, bias, stride_t, padding_t, dilation_t, groups)
    elif energy is None and rate == 0.0 and all(k == 1 for k in kernel):
        # A 1x1 kernel at rate 0: nothing is dropped, so the band-limited convolution is the
        # exact one, a plain matrix product over channels, which torch runs without any
        # transform (a transform is pure overhead here; DenseNet-style models are full of these).
        conv = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
        # The same checks and limits as every other path (the grid cap: a padding that large is
        # refused at once here too, not handed to a direct convolution that runs for seconds).
        geometry(x.shape, weight.shape, stride_t, padding_t, dilation_t, groups)
        # A stride beyond the padded input gives the same result as one equal to it (one output
        # per axis, from position 0); torch's conv backward crashes for huge strides (2**16 and
        # up, torch 2.13), so they are clamped.
        stride_1x1 = tuple(
            min(s, max(1, n + 2 * p)) for s, n, p in zip(stride_t, x.shape[2:], padding_t)
        )
        y = conv(x, weight, bias, stride_1x1, padding_t, dilation_t, groups)
    elif energy is not None and torch.compiler.is_compiling():
        # Selection inside the op: no graph break (docs/design.md 1.7). The record holds the
        # choice as tensors (read by compression_report).
        conf = (list(stride_t), list(padding_t), list(dilation_t), groups)
        y, info = _ops.conv_forward_energy(x, weight, bias, *conf, energy)
        band, chosen_rate, energy_kept = info[:2], info[2], info[3]
    else:
        if energy is not None and _ops._functorch_active():
            raise NotImplementedError(
                f"blfft.{fn}: energy selection under torch.func transforms (grad, vjp, vmap) is "
                f"not supported; use compress_rate"
            )
        handed = None  # x's spectrum at the chosen kept set, from the selection (CPU)
        if energy is not None:
            # The hand-over (a forward from the selection's spectrum) bypasses conv_forward's
            # dispatch, hence its autocast rule, and the weight-spectrum cache's forwards.
            plain = weight_cache is not None or torch.is_autocast_enabled(x.device.type)
            select = _ops.select_band if plain else _ops.select_for_forward
            band, sel, *rest = select(
                x, weight.shape, stride_t, padding_t, dilation_t, groups, energy
            )
            handed = rest[0] if rest else None
            energy_kept = sel.energy_kept
            chosen_rate = float(sel.rate)
        grad_on = torch.is_grad_enabled()
        # The ops' arguments after the weight (or its shape) and bias.
        conf = (list(stride_t), list(padding_t), list(dilation_t), groups, rate, band)
        # (Not under torch.func transforms: the cache's eager look-up cannot see their tensors;
        # with gradients on, not under torch.compile either, whose graphs hold conv_forward.)
        cache = None if _ops._functorch_active() else weight_cache
        if handed is not None:
            y = _ops.conv_diff_handed_over(x, weight, bias, conf, handed)
        elif cache is not None and not grad_on:
            ws = cache.get(x.shape, weight, *conf)
            y = _ops.conv_forward_cached(x, ws, bias, list(weight.shape), *conf)
        elif (
            cache is not None
            and not torch.compiler.is_compiling()
            and cache.serves_training(x, weight, conf)
        ):
            y = _ops.conv_with_cached_weight(x, weight, bias, cache, conf)
        else:
            y = _ops.conv_diff(x, weight, bias, conf)
    record = CallRecord(
        tuple(x.shape),
        tuple(weight.shape),
        stride_t,
        padding_t,
        dilation_t,
        groups,
        chosen_rate,
        band if isinstance(band, Tensor) else tuple(band),
        energy,
        energy_kept,
    )
    return (y if batched else y.squeeze(0)), record


def _empty_batch(x, weight, bias, stride, padding, dilation, groups) -> Tensor:
    # The core needs batch >= 1; an empty batch has an empty output (shape from the core) and
    # zero gradients, as in torch.
    shape = (1,) + tuple(x.shape[1:])
    _, _, g = geometry(shape, weight.shape, stride, padding, dilation, groups)
    y = x.new_zeros((0,) + tuple(g.output_shape[1:]), dtype=_output_dtype(x))
    # Autograd links to x, weight and bias through empty slices: O(1) in the forward however
    # large a broadcast (expanded) weight is (a full weight.sum() hung on a 2**40-element one).
    link = (x.sum() + weight.narrow(0, 0, 0).sum()) * 0
    if bias is not None:
        link = link + bias.narrow(0, 0, 0).sum() * 0
    return y + link


def conv_transpose(
    ndim: int,
    fn: str,
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: _IntOrTuple,
    padding: _IntOrTuple,
    output_padding: _IntOrTuple,
    groups: int,
    dilation: _IntOrTuple,
    compress_rate: float,
    weight_cache: Optional[WeightSpectrumCache] = None,
) -> Tuple[Tensor, CallRecord]:
    """The band-limited transposed convolution: the input gradient of the band-limited
    convolution whose input has this call's output size (output_padding picks it), with
    weight (in_channels, out_channels/groups, ...) as that convolution's weight. It is the exact
    adjoint of that convolution at the same rate; its gradients are that convolution's forward
    and weight gradient (conv_backward's autograd, docs/design.md 1.6). The record describes that
    convolution."""
    groups = _check_groups(groups, fn)
    batched = _check_tensors(fn, ndim, input, weight, bias, -groups)
    _refuse_forward_ad(fn, input, weight, bias)
    stride_t = _as_tuple(stride, ndim, "stride", fn, 1)
    padding_t = _as_tuple(padding, ndim, "padding", fn, 0)
    out_pad_t = _as_tuple(output_padding, ndim, "output_padding", fn, 0)
    dilation_t = _as_tuple(dilation, ndim, "dilation", fn, 1)
    rate = check_rate(compress_rate, fn)
    g = input if batched else input.unsqueeze(0)
    in_channels, out_per_group = weight.shape[0], weight.shape[1]
    if g.shape[1] != in_channels:
        raise ValueError(
            f"blfft.{fn}: input has {g.shape[1]} channels but weight of shape "
            f"{tuple(weight.shape)} expects {in_channels} (weight is (in_channels, "
            f"out_channels/groups, ...))"
        )
    if in_channels % groups != 0:
        raise ValueError(
            f"blfft.{fn}: in_channels={in_channels} is not divisible by groups={groups}"
        )
    for op, s, d in zip(out_pad_t, stride_t, dilation_t, strict=True):
        if op >= s and op >= d:
            raise ValueError(
                f"blfft.{fn}: output_padding must be smaller than stride or dilation, got "
                f"output_padding={out_pad_t}, stride={stride_t}, dilation={dilation_t}"
            )
    kernel = tuple(weight.shape[2:])
    out_spatial = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, s, p, d, k, op in zip(
            g.shape[2:], stride_t, padding_t, dilation_t, kernel, out_pad_t, strict=True
        )
    )
    if any(n < 1 for n in out_spatial):
        raise ValueError(
            f"blfft.{fn}: the output size {out_spatial} is not positive (input "
            f"{tuple(g.shape[2:])}, kernel {kernel}, stride {stride_t}, padding {padding_t}, "
            f"dilation {dilation_t}, output_padding {out_pad_t})"
        )
    x_shape = (g.shape[0], out_per_group * groups) + out_spatial
    conf = (list(stride_t), list(padding_t), list(dilation_t), groups, rate, [])
    if g.shape[0] == 0:
        link = (g.sum() + weight.narrow(0, 0, 0).sum()) * 0  # (a 0-dim link: y keeps its dtype)
        y = g.new_zeros(x_shape, dtype=_output_dtype(g)) + link
        if bias is not None:
            y = y + bias.reshape((1, -1) + (1,) * ndim).to(y.dtype)
    else:
        # With output_padding >= stride (allowed when below the dilation) that convolution's
        # output is longer than this input: its gradient there is zero. (Its length is torch's
        # formula, docs/design.md 1.1: the core's geometry is not asked here, as that would
        # break torch.compile graphs; the op checks the shapes against it.)
        conv_out = [
            -(-(n + 2 * p - d * (k - 1)) // s)
            for n, p, d, k, s in zip(
                out_spatial, padding_t, dilation_t, kernel, stride_t, strict=True
            )
        ]
        extra = [o - n for o, n in zip(conv_out, g.shape[2:], strict=True)]
        if any(extra):
            pad_spec: List[int] = []
            for e in reversed(extra):
                pad_spec += [0, e]
            g = F.pad(g, pad_spec)
        full = (list(x_shape), list(weight.shape)) + conf
        if (
            weight_cache is not None
            and not torch.is_grad_enabled()
            and not _ops._functorch_active()
        ):
            ws = weight_cache.get(x_shape, weight, *conf)
            y = _ops.conv_transpose(g, None, ws, bias, *full)
        else:
            y = _ops.conv_transpose_diff(g, weight, bias, full)
    record = CallRecord(
        tuple(x_shape),
        tuple(weight.shape),
        stride_t,
        padding_t,
        dilation_t,
        groups,
        rate,
        (),
        None,
        None,
    )
    return (y if batched else y.squeeze(0)), record
