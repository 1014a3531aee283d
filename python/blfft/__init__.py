"""blfft: band-limited FFT convolution for PyTorch (Dziedzic et al., ICML 2019).

Convolutions that keep only the low-frequency Fourier coefficients of the input, the filter and
the gradients, in the forward pass and in both backward passes; the compression rate trades
accuracy for compute and memory.

- :mod:`blfft.functional`: ``conv1d`` / ``conv2d`` with torch's conventions plus
  ``compress_rate`` / ``energy``;
- :mod:`blfft.nn`: ``Conv1d`` / ``Conv2d`` modules (subclasses of torch's);
- :func:`convert`, :func:`set_compression`, :func:`compression_report`: whole models;
- :func:`build_info`: what this build can do.

The computation runs in the C++ core (``blfft._core``); tensors cross by DLPack without copies.
The operators are registered as ``torch.ops.blfft.conv_forward`` / ``conv_backward``, so models
built from them run under ``torch.compile``.
"""

import torch as _torch  # noqa: F401  (the ops below register with torch.library)

from . import (
    _core,
    _ops,  # noqa: F401  (registers torch.ops.blfft.*)
    functional,
    nn,
)
from ._core import BlfftError
from .tools import CompressionReport, compression_report, convert, set_compression

__version__ = _core.__version__

__all__ = [
    "BlfftError",
    "CompressionReport",
    "build_info",
    "compression_report",
    "convert",
    "functional",
    "get_num_threads",
    "nn",
    "set_compression",
    "set_num_threads",
]


def build_info() -> dict:
    """What this build of blfft can do.

    Keys: ``version``; ``cuda_built`` (whether the CUDA backend was compiled) and
    ``cuda_architectures`` (the architectures it was compiled for, empty when not built);
    ``gpu_available`` (``torch.cuda.is_available()`` now); ``cuda_usable`` (both); ``dlpack``
    (the DLPack ABI version the binding speaks); ``num_threads`` (CPU backend threads);
    ``torch`` (the torch version in use).
    """
    gpu = bool(_torch.cuda.is_available())
    return {
        "version": __version__,
        "cuda_built": bool(_core.cuda_built),
        "cuda_architectures": list(_core.cuda_architectures),
        "gpu_available": gpu,
        "cuda_usable": bool(_core.cuda_built) and gpu,
        "dlpack": tuple(_core.dlpack_version),
        "num_threads": int(_core.get_num_threads()),
        "torch": _torch.__version__,
    }


def set_num_threads(n: int) -> None:
    """Threads the CPU backend uses (0: OpenMP's default, e.g. OMP_NUM_THREADS)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads the CPU backend uses."""
    return int(_core.get_num_threads())
