"""Band-limited ``Conv1d`` / ``Conv2d`` / ``Conv3d`` / ``ConvTranspose1d`` / ``ConvTranspose2d``
modules (``Conv3d``: CPU backend, no energy selection).

They subclass torch's classes: same constructor (plus the compression knobs), same parameters
(``weight``, ``bias``) with the same shapes, so state_dicts load both ways and
``isinstance(m, torch.nn.Conv2d)`` holds. Only the convolution itself changes. The transposed
layers take ``compress_rate``, ``inference_compress_rate`` and ``cache_weight_spectrum``, not
``energy`` (energy selection looks at a convolution's input, which a transposed layer has not).

Compression knobs (keyword-only):

- ``compress_rate`` in [0, 1): the fraction of Fourier coefficients discarded in training mode;
- ``inference_compress_rate``: the rate in eval mode; ``None`` (the default) follows
  ``compress_rate`` (the paper trains at one rate and may infer at another, section 4.2);
- ``energy`` in (0, 1] or ``None``: when set, every call chooses the largest compression whose kept
  set holds at least that fraction of the input spectrum's energy, in both modes, and the rates
  are not used;
- ``cache_weight_spectrum`` (default False): keep the layer's compressed weight spectrum between
  calls instead of transforming the weight on every call: evaluation and inference then pay one
  weight transform per weight update, and training one per step (forward and backward's input
  gradient share the spectrum; microbatches with the same weight too). It is recomputed when the
  weight's values change (however they are written: in place, through ``weight.data``, by an
  optimizer, a new tensor; the cache compares a copy of the weight bit for bit) or the input
  size, kept set, dtype or device does. With gradients on it is used for float32 / float64
  layers outside autocast and torch.compile, except where the CPU core mixes from the weight's
  taps (some 1D layers: faster without a spectrum). Costs the spectrum's memory (``2 * kept *
  out_channels * in_channels/groups`` scalars; 306 MB for the CIFAR ResNet-18 at rate 0.5, 7x
  its parameters) and a copy of the weight, until :func:`blfft.clear_caches` or the module goes;
  hence opt-in (blfft._weight_cache).

All three may be changed at any time (or with :func:`blfft.set_compression`); nothing visible is
rebuilt.
"""

from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _core
from ._conv import check_energy, check_rate, conv, conv_transpose
from ._weight_cache import WeightSpectrumCache

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d"]


class _Knobs:
    """The compression knobs shared by every blfft layer."""

    _blfft_ndim = 0
    _blfft_fn = ""
    _blfft_energy_ok = True  # whether energy selection applies (not to transposed layers)

    def _init_compression(
        self, compress_rate, inference_compress_rate, energy, cache_weight_spectrum=False
    ) -> None:
        self.compress_rate = compress_rate
        self.inference_compress_rate = inference_compress_rate
        self.energy = energy
        self.cache_weight_spectrum = bool(cache_weight_spectrum)
        self._blfft_weight_cache = WeightSpectrumCache()
        # (training, _conv.CallRecord) of the last forward, for compression_report.
        self._blfft_last = None

    # --- knobs ------------------------------------------------------------------------------------
    @property
    def compress_rate(self) -> float:
        """The rate used in training mode."""
        return self._blfft_rate

    @compress_rate.setter
    def compress_rate(self, value) -> None:
        self._blfft_rate = check_rate(value, type(self).__name__)

    @property
    def inference_compress_rate(self) -> float:
        """The rate used in eval mode (follows compress_rate unless set)."""
        r = self._blfft_inference_rate
        return self._blfft_rate if r is None else r

    @inference_compress_rate.setter
    def inference_compress_rate(self, value) -> None:
        self._blfft_inference_rate = (
            None if value is None else check_rate(value, type(self).__name__)
        )

    @property
    def inference_rate_follows_training(self) -> bool:
        return self._blfft_inference_rate is None

    @property
    def energy(self) -> Optional[float]:
        """Energy fraction for per-call energy-based selection, or None (rate-based)."""
        return self._blfft_energy

    @energy.setter
    def energy(self, value) -> None:
        if value is not None and not self._blfft_energy_ok:
            raise ValueError(
                f"blfft.{type(self).__name__}: energy selection does not apply to transposed "
                f"convolutions; use compress_rate"
            )
        self._blfft_energy = check_energy(value, type(self).__name__)

    @property
    def last_call(self):
        """``(training, record)`` of the last forward (``record``: what the core computed, a
        ``CallRecord``), or None before the first; read by :func:`blfft.compression_report`."""
        return self._blfft_last

    @property
    def active_compress_rate(self) -> float:
        """The rate the next forward uses in the current mode (ignored when energy is set)."""
        return self.compress_rate if self.training else self.inference_compress_rate

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f", compress_rate={self.compress_rate}"
        s += f", inference_compress_rate={self.inference_compress_rate}"
        if self.energy is not None:
            s += f", energy={self.energy}"
        if self.cache_weight_spectrum:
            s += ", cache_weight_spectrum=True"
        return s

    # --- conversion -------------------------------------------------------------------------------
    _blfft_torch: type = torch.nn.Module  # the torch class a layer replaces

    @classmethod
    def _torch_kwargs(cls, module) -> dict:
        """The constructor arguments of `module` after the channels and kernel size."""
        return dict(
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )

    @classmethod
    def from_torch(
        cls,
        module: torch.nn.Module,
        *,
        compress_rate: float = 0.0,
        inference_compress_rate: Optional[float] = None,
        energy: Optional[float] = None,
        cache_weight_spectrum: bool = False,
    ):
        """A band-limited module sharing `module`'s parameters (the same Parameter objects, so
        device, dtype and optimizer state carry over), hooks and train/eval mode."""
        base = cls._blfft_torch
        if not isinstance(module, base):
            raise TypeError(
                f"blfft: {cls.__name__}.from_torch needs a {base.__name__}, got "
                f"{type(module).__name__}"
            )
        if torch.nn.utils.parametrize.is_parametrized(module):
            raise ValueError(
                "blfft: cannot convert a parametrized convolution (torch.nn.utils.parametrize); "
                "convert the model before registering parametrizations"
            )
        knobs = dict(
            compress_rate=compress_rate,
            inference_compress_rate=inference_compress_rate,
            cache_weight_spectrum=cache_weight_spectrum,
        )
        if cls._blfft_energy_ok or energy is not None:
            knobs["energy"] = energy
        new = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            **cls._torch_kwargs(module),
            device="meta",
            dtype=module.weight.dtype,
            **knobs,
        )
        # Share parameters, buffers and hooks instead of copying them.
        for attr in (
            "_parameters",
            "_buffers",
            "_non_persistent_buffers_set",
            "_forward_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_hooks_always_called",
            "_forward_pre_hooks",
            "_forward_pre_hooks_with_kwargs",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
            "_state_dict_pre_hooks",
            "_load_state_dict_pre_hooks",
            "_load_state_dict_post_hooks",
        ):
            if attr in module.__dict__:
                new.__dict__[attr] = module.__dict__[attr].copy()
        new.train(module.training)
        return new


class _BandLimitedConv(_Knobs):
    """The forward and conversion shared by Conv1d and Conv2d."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Tuple[int, ...]],
        stride: Union[int, Tuple[int, ...]] = 1,
        padding: Union[str, int, Tuple[int, ...]] = 0,
        dilation: Union[int, Tuple[int, ...]] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Optional[Union[torch.device, str, int]] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        compress_rate: float = 0.0,
        inference_compress_rate: Optional[float] = None,
        energy: Optional[float] = None,
        cache_weight_spectrum: bool = False,
    ) -> None:
        # torch.nn.Conv1d's / Conv2d's constructor (the next class in the MRO): same arguments.
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        # torch keeps a padding tuple of the wrong length (Conv2d(..., padding=(p, 0, 0))); with a
        # padding_mode other than zeros its F.pad then pads the channel axis too (by 2**31 - 1: a
        # 17 GB tensor before any other check). Refused here, naming the argument.
        if not isinstance(self.padding, str) and len(self.padding) != self._blfft_ndim:
            raise ValueError(
                f"blfft.{self._blfft_fn}: padding must be an int, 'same', 'valid' or a tuple of "
                f"{self._blfft_ndim} ints, got {padding!r}"
            )
        self._init_compression(
            compress_rate, inference_compress_rate, energy, cache_weight_spectrum
        )

    # --- forward ----------------------------------------------------------------------------------
    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if self.padding_mode != "zeros":
            # As torch does: pad with the mode first, then a zero-padding (here: none) convolution.
            self._check_padded_size(input)
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        energy = self.energy
        rate = 0.0 if energy is not None else self.active_compress_rate
        y, record = conv(
            self._blfft_ndim,
            self._blfft_fn,
            input,
            weight,
            bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            rate,
            energy,
            self._blfft_weight_cache if self.cache_weight_spectrum else None,
        )
        self._blfft_last = (self.training, record)
        return y

    def _check_padded_size(self, input: Tensor) -> None:
        """Refuses, before F.pad allocates it, a padded input larger than any grid the core
        computes on (blfft::max_grid_points): the core would refuse it anyway, after torch had
        spent seconds and gigabytes making it."""
        cap = getattr(_core, "max_grid_points", None)
        if cap is None or input.dim() < self._blfft_ndim:
            return
        pads = self._reversed_padding_repeated_twice  # last axis first, (left, right) pairs
        axes = max(self._blfft_ndim, len(pads) // 2)  # every axis F.pad would pad
        if input.dim() < axes:
            return
        spatial = list(input.shape[input.dim() - axes :])
        points = 1
        padded = []
        for i, n in enumerate(reversed(spatial)):
            padded.append(int(n) + int(pads[2 * i]) + int(pads[2 * i + 1]))
            points *= padded[-1]
        if points > cap:
            raise ValueError(
                f"blfft.{type(self).__name__}: the input padded with padding_mode="
                f"'{self.padding_mode}' would be {tuple(reversed(padded))} ({points} points), "
                f"more than blfft's limit of {cap} grid points; check the padding and input size"
            )


class Conv1d(_BandLimitedConv, torch.nn.Conv1d):
    """Band-limited ``torch.nn.Conv1d``. Extra keyword-only arguments: ``compress_rate``,
    ``inference_compress_rate``, ``energy`` (see the module docstring)."""

    _blfft_ndim = 1
    _blfft_fn = "Conv1d"
    _blfft_torch = torch.nn.Conv1d


class Conv2d(_BandLimitedConv, torch.nn.Conv2d):
    """Band-limited ``torch.nn.Conv2d``. Extra keyword-only arguments: ``compress_rate``,
    ``inference_compress_rate``, ``energy`` (see the module docstring)."""

    _blfft_ndim = 2
    _blfft_fn = "Conv2d"
    _blfft_torch = torch.nn.Conv2d


class Conv3d(_BandLimitedConv, torch.nn.Conv3d):
    """Band-limited ``torch.nn.Conv3d`` (CPU and CUDA tensors). Extra keyword-only
    arguments: ``compress_rate``, ``inference_compress_rate`` (see the module docstring); energy
    selection is not supported for 3D layers."""

    _blfft_ndim = 3
    _blfft_fn = "Conv3d"
    _blfft_torch = torch.nn.Conv3d
    _blfft_energy_ok = False  # blfft.convert(energy=...) leaves 3D layers on compress_rate

    @_Knobs.energy.setter
    def energy(self, value) -> None:
        if value is not None:
            raise NotImplementedError(
                "blfft.Conv3d: energy-based compression is not supported for 3D convolutions; "
                "use compress_rate"
            )
        _Knobs.energy.fset(self, value)


class _BandLimitedConvTranspose(_Knobs):
    """The forward shared by ConvTranspose1d and ConvTranspose2d: the exact adjoint of the
    band-limited convolution at the same rate (:func:`blfft.functional.conv_transpose2d`)."""

    _blfft_energy_ok = False

    def __init__(
        self,
        *args,
        compress_rate: float = 0.0,
        inference_compress_rate: Optional[float] = None,
        cache_weight_spectrum: bool = False,
        **kwargs,
    ) -> None:
        # torch's ConvTranspose1d / ConvTranspose2d constructor (the next class in the MRO) takes
        # the other arguments: in_channels, out_channels, kernel_size, stride, padding,
        # output_padding, groups, bias, dilation, padding_mode, device, dtype.
        super().__init__(*args, **kwargs)
        self._init_compression(compress_rate, inference_compress_rate, None, cache_weight_spectrum)

    @classmethod
    def _torch_kwargs(cls, module) -> dict:
        return dict(super()._torch_kwargs(module), output_padding=module.output_padding)

    def forward(self, input: Tensor, output_size: Optional[List[int]] = None) -> Tensor:
        ndim = self._blfft_ndim
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, ndim, self.dilation
        )
        y, record = conv_transpose(
            ndim,
            self._blfft_fn,
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
            self.active_compress_rate,
            self._blfft_weight_cache if self.cache_weight_spectrum else None,
        )
        self._blfft_last = (self.training, record)
        return y


class ConvTranspose1d(_BandLimitedConvTranspose, torch.nn.ConvTranspose1d):
    """Band-limited ``torch.nn.ConvTranspose1d``. Extra keyword-only arguments:
    ``compress_rate``, ``inference_compress_rate``, ``cache_weight_spectrum``."""

    _blfft_ndim = 1
    _blfft_fn = "ConvTranspose1d"
    _blfft_torch = torch.nn.ConvTranspose1d


class ConvTranspose2d(_BandLimitedConvTranspose, torch.nn.ConvTranspose2d):
    """Band-limited ``torch.nn.ConvTranspose2d``. Extra keyword-only arguments:
    ``compress_rate``, ``inference_compress_rate``, ``cache_weight_spectrum``."""

    _blfft_ndim = 2
    _blfft_fn = "ConvTranspose2d"
    _blfft_torch = torch.nn.ConvTranspose2d
