"""Band-limited convolutions with the conventions of ``torch.nn.functional.conv1d`` / ``conv2d`` /
``conv3d`` (``conv3d``: CPU backend, ``compress_rate`` only).

``conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
compress_rate=0.0, energy=None)`` (and ``conv2d`` alike) compute the cross-correlation of
``torch.nn.functional`` in float32 or float64, on the CPU or on CUDA devices (where the CUDA
backend is built: ``blfft.build_info()``), keeping only the low-frequency Fourier coefficients
of the input, the filter and the gradients (Dziedzic et al., ICML 2019):

- ``compress_rate`` in [0, 1) is the fraction of coefficients discarded (0: exact convolution;
  1x1 kernels at rate 0 run as torch's own convolution, the same operator without transforms);
- ``energy`` in (0, 1] instead chooses, per call, the largest compression whose kept set holds at
  least that fraction of the input spectrum's energy.

``conv_transpose1d`` / ``conv_transpose2d`` follow ``torch.nn.functional.conv_transpose1d`` /
``conv_transpose2d`` (``compress_rate`` only): the exact adjoint of the band-limited convolution at
the same rate, computed as its input gradient.

All are differentiable in input, weight and bias, to any order. Backward reuses the compressed
spectra saved by forward; the autograd graph keeps the compressed input spectrum instead of the
input whenever it is smaller. float16 and bfloat16 tensors are computed in float32 and returned in
their own dtype.
"""

from typing import Optional, Sequence, Union

from torch import Tensor

from ._conv import conv as _conv
from ._conv import conv_transpose as _conv_transpose

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d"]

_IntOrTuple = Union[int, Sequence[int]]


def _functional(ndim: int, name: str, doc: str):
    """``blfft.functional.conv1d`` / ``conv2d``: one body, torch's signature."""

    def conv(
        input: Tensor,
        weight: Tensor,
        bias: Optional[Tensor] = None,
        stride: _IntOrTuple = 1,
        padding: Union[str, _IntOrTuple] = 0,
        dilation: _IntOrTuple = 1,
        groups: int = 1,
        *,
        compress_rate: float = 0.0,
        energy: Optional[float] = None,
    ) -> Tensor:
        return _conv(
            ndim,
            name,
            input,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            compress_rate,
            energy,
        )[0]

    conv.__name__ = conv.__qualname__ = name
    conv.__doc__ = doc
    return conv


conv1d = _functional(
    1,
    "conv1d",
    """Band-limited ``torch.nn.functional.conv1d``: input (N, C, L) or (C, L), weight
    (F, C/groups, K). ``compress_rate`` in [0, 1) or ``energy`` in (0, 1] set the compression.""",
)

conv2d = _functional(
    2,
    "conv2d",
    """Band-limited ``torch.nn.functional.conv2d``: input (N, C, H, W) or (C, H, W), weight
    (F, C/groups, KH, KW). ``compress_rate`` in [0, 1) or ``energy`` in (0, 1] set the
    compression.""",
)

conv3d = _functional(
    3,
    "conv3d",
    """Band-limited ``torch.nn.functional.conv3d``: input (N, C, D, H, W) or (C, D, H, W), weight
    (F, C/groups, KD, KH, KW). ``compress_rate`` in [0, 1) sets the compression (per-axis band
    limits with exponent 1/3). CPU and CUDA tensors; ``energy`` is not supported in 3D.""",
)


def _functional_transpose(ndim: int, name: str, doc: str):
    """``blfft.functional.conv_transpose1d`` / ``conv_transpose2d``: torch's signature."""

    def conv_transpose(
        input: Tensor,
        weight: Tensor,
        bias: Optional[Tensor] = None,
        stride: _IntOrTuple = 1,
        padding: _IntOrTuple = 0,
        output_padding: _IntOrTuple = 0,
        groups: int = 1,
        dilation: _IntOrTuple = 1,
        *,
        compress_rate: float = 0.0,
    ) -> Tensor:
        geometry = (stride, padding, output_padding, groups, dilation)
        return _conv_transpose(ndim, name, input, weight, bias, *geometry, compress_rate)[0]

    conv_transpose.__name__ = conv_transpose.__qualname__ = name
    conv_transpose.__doc__ = doc
    return conv_transpose


conv_transpose1d = _functional_transpose(
    1,
    "conv_transpose1d",
    """Band-limited ``torch.nn.functional.conv_transpose1d``: input (N, C_in, L) or (C_in, L),
    weight (C_in, C_out/groups, K). The exact adjoint of ``conv1d`` at the same
    ``compress_rate``.""",
)

conv_transpose2d = _functional_transpose(
    2,
    "conv_transpose2d",
    """Band-limited ``torch.nn.functional.conv_transpose2d``: input (N, C_in, H, W) or
    (C_in, H, W), weight (C_in, C_out/groups, KH, KW). The exact adjoint of ``conv2d`` at the
    same ``compress_rate``.""",
)
