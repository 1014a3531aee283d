"""The band-limited convolution behind ``blfft.functional`` and ``blfft.nn``: argument checks,
torch's conventions (padding modes, unbatched inputs, empty batches, 1x1 kernels at rate 0),
energy-based selection, and the call of the ops (``blfft._ops``).
"""

import math
import numbers
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _ops, _settings
from ._backends import check_device
from ._geometry import geometry
from ._weight_cache import WeightSpectrumCache

_IntOrTuple = Union[int, Sequence[int]]
_FLOAT_DTYPES = (torch.float32, torch.float64)


class CallRecord(NamedTuple):
    """What one call computed, in the core's terms (for compression reports)."""

    x_shape: Tuple[int, ...]  # the input as the core saw it (after explicit 'same' padding)
    w_shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    groups: int
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
    if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
        raise ValueError(f"blfft.{fn}: compress_rate must be in [0, 1), got {rate!r}")
    return rate


def check_energy(energy, fn: str) -> Optional[float]:
    if energy is None:
        return None
    if isinstance(energy, bool) or not isinstance(energy, numbers.Real):
        raise TypeError(f"blfft.{fn}: energy must be None or a float in (0, 1], got {energy!r}")
    energy = float(energy)
    if not (math.isfinite(energy) and 0.0 < energy <= 1.0):
        raise ValueError(f"blfft.{fn}: energy must be in (0, 1], got {energy!r}")
    return energy


def _check_tensors(fn: str, ndim: int, input, weight, bias) -> bool:
    """Validates types, dtypes, devices, ranks and channel counts; returns whether batched."""
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, Tensor):
            raise TypeError(f"blfft.{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(
            f"blfft.{fn}: bias must be a torch.Tensor or None, got {type(bias).__name__}"
        )
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"blfft.{fn}: input must be float32 or float64, got {input.dtype}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != input.dtype:
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
    if weight.dim() != ndim + 2:
        raise ValueError(
            f"blfft.{fn}: weight must have {ndim + 2} dimensions (out_channels, in_channels/groups"
            f", {_spatial(ndim)}), got shape {tuple(weight.shape)}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(
            f"blfft.{fn}: bias must have shape ({weight.shape[0]},) (out_channels), got "
            f"{tuple(bias.shape)}"
        )
    return input.dim() == ndim + 2


def _spatial(ndim: int) -> str:
    return "L" if ndim == 1 else "H, W"


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
    batched = _check_tensors(fn, ndim, input, weight, bias)
    stride_t = _as_tuple(stride, ndim, "stride", fn, 1)
    dilation_t = _as_tuple(dilation, ndim, "dilation", fn, 1)
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"blfft.{fn}: groups must be a positive int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"blfft.{fn}: groups must be >= 1, got {groups!r}")
    groups = int(groups)
    rate = check_rate(compress_rate, fn)
    energy = check_energy(energy, fn)
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
        conv = F.conv1d if ndim == 1 else F.conv2d
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
    else:
        if energy is not None:
            band, sel = _ops.select_band(
                x, weight.shape, stride_t, padding_t, dilation_t, groups, energy
            )
            energy_kept = sel.energy_kept
            chosen_rate = float(sel.rate)
        grad_on = torch.is_grad_enabled()
        # The ops' arguments after the weight (or its shape) and bias.
        conf = (list(stride_t), list(padding_t), list(dilation_t), groups, rate, band)
        if weight_cache is not None and not grad_on:
            ws = weight_cache.get(x.shape, weight, *conf)
            y = _ops.conv_forward_cached(x, ws, bias, list(weight.shape), *conf)
        else:
            y, _, _ = _ops.conv_forward(
                x,
                weight,
                bias,
                *conf,
                grad_on and weight.requires_grad,
                grad_on and x.requires_grad,
                _settings.get_weight_spectrum_saving(),
                _settings.saved_dtype_name(),
                _settings.get_input_spectrum_saving(),
            )
    record = CallRecord(
        tuple(x.shape),
        tuple(weight.shape),
        stride_t,
        padding_t,
        dilation_t,
        groups,
        chosen_rate,
        tuple(band),
        energy,
        energy_kept,
    )
    return (y if batched else y.squeeze(0)), record


def _empty_batch(x, weight, bias, stride, padding, dilation, groups) -> Tensor:
    # The core needs batch >= 1; an empty batch has an empty output (shape from the core) and
    # zero gradients, as in torch.
    shape = (1,) + tuple(x.shape[1:])
    _, _, g = geometry(shape, weight.shape, stride, padding, dilation, groups)
    y = x.new_zeros((0,) + tuple(g.output_shape[1:]))
    # Autograd links to x, weight and bias through empty slices: O(1) in the forward however
    # large a broadcast (expanded) weight is (a full weight.sum() hung on a 2**40-element one).
    link = (x.sum() + weight.narrow(0, 0, 0).sum()) * 0
    if bias is not None:
        link = link + bias.narrow(0, 0, 0).sum() * 0
    return y + link
