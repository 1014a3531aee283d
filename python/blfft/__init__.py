"""blfft: band-limited FFT convolution for PyTorch (Dziedzic et al., ICML 2019).

Convolutions that keep only the low-frequency Fourier coefficients of the input, the filter and
the gradients, in the forward pass and in both backward passes; the compression rate trades
accuracy for compute and memory.

- :mod:`blfft.functional`: ``conv1d`` / ``conv2d`` / ``conv_transpose1d`` / ``conv_transpose2d``
  with torch's conventions plus ``compress_rate`` / ``energy``;
- :mod:`blfft.nn`: ``Conv1d`` / ``Conv2d`` / ``ConvTranspose1d`` / ``ConvTranspose2d`` modules
  (subclasses of torch's);
- :func:`convert`, :func:`set_compression`, :func:`compression_report`: whole models;
- :func:`set_input_spectrum_saving`, :func:`set_weight_spectrum_saving`,
  :func:`set_saved_spectrum_dtype`: what backward keeps;
- :func:`set_deterministic`: bitwise-reproducible results (also on under
  ``torch.use_deterministic_algorithms(True)``);
- :func:`clear_caches`, :func:`set_max_idle_memory`, :func:`set_max_buffer_size`: memory held
  between calls, and the largest buffer a call may allocate;
- :func:`build_info`: what this build can do.

The computation runs in the C++ core: ``blfft._core`` for CPU tensors, ``blfft._cuda`` (the CUDA
backend, where it was built) for CUDA tensors; tensors cross by DLPack without copies.
The operators are registered as ``torch.ops.blfft.conv_forward`` / ``conv_backward``, so models
built from them run under ``torch.compile``.
"""

import torch as _torch  # noqa: F401  (the ops below register with torch.library)

from . import (
    _backends,
    _core,
    _ops,  # noqa: F401  (registers torch.ops.blfft.*)
    functional,
    nn,
)
from ._core import BlfftError
from ._memory import (
    clear_caches,
    get_max_buffer_size,
    get_max_idle_memory,
    idle_memory,
    set_max_buffer_size,
    set_max_idle_memory,
)
from ._settings import (
    get_deterministic,
    get_input_spectrum_saving,
    get_saved_spectrum_dtype,
    get_weight_spectrum_saving,
    set_deterministic,
    set_input_spectrum_saving,
    set_saved_spectrum_dtype,
    set_weight_spectrum_saving,
)
from .tools import CompressionReport, compression_report, convert, set_compression

__version__ = _core.__version__

__all__ = [
    "BlfftError",
    "CompressionReport",
    "build_info",
    "clear_caches",
    "compression_report",
    "convert",
    "functional",
    "get_deterministic",
    "get_input_spectrum_saving",
    "get_max_buffer_size",
    "get_max_idle_memory",
    "get_num_threads",
    "get_saved_spectrum_dtype",
    "get_weight_spectrum_saving",
    "idle_memory",
    "nn",
    "set_compression",
    "set_deterministic",
    "set_input_spectrum_saving",
    "set_max_buffer_size",
    "set_max_idle_memory",
    "set_num_threads",
    "set_saved_spectrum_dtype",
    "set_weight_spectrum_saving",
]


def build_info() -> dict:
    """What this build of blfft can do.

    Keys: ``version``; ``cuda_built`` (whether the CUDA backend's module ``blfft._cuda`` is there
    and imports) and ``cuda_architectures`` (the GPU architectures its kernels were compiled for,
    empty when not built); ``cuda_import_error`` (why ``blfft._cuda`` failed to load, when it
    exists but did not load; else None); ``gpu_available`` (``torch.cuda.is_available()`` now);
    ``cuda_device_count`` (the GPUs blfft's CUDA backend sees: 0 when not built or without a
    usable driver); ``cuda_usable`` (CUDA tensors run: built, and torch and blfft both see a GPU);
    ``dlpack`` (the DLPack ABI version the bindings speak); ``num_threads`` (CPU backend threads);
    ``torch`` (the torch version in use); ``cuda_build`` (what the build decided about the CUDA
    backend: "built: ..." or "not built (...): ..." with why, e.g. no nvcc; None for a build
    that did not record it); ``blas`` (the BLAS the CPU backend was built against, e.g.
    "scipy-openblas32 (...)" or "BLIS (serial)"; None when not recorded) and ``blas_core`` (the
    kernels scipy-openblas32 picked for this CPU, e.g. "SkylakeX" or "Haswell"; None for another
    BLAS): a BLAS whose kernels do not know the CPU makes blfft several times slower (README).
    """
    try:
        from ._build_config import CUDA_REASON as cuda_build
    except ImportError:  # a build tree without python/CMakeLists.txt's _build_config.py
        cuda_build = None
    try:
        from ._build_config import BLAS as blas
    except ImportError:
        blas = None
    gpu = bool(_torch.cuda.is_available())
    cuda = _backends.cuda_module
    devices = _backends.cuda_device_count()
    return {
        "version": __version__,
        "cuda_built": cuda is not None,
        "cuda_architectures": [] if cuda is None else list(cuda.cuda_architectures),
        "cuda_import_error": _backends.cuda_import_error,
        "gpu_available": gpu,
        "cuda_device_count": devices,
        "cuda_usable": cuda is not None and gpu and devices > 0,
        "dlpack": tuple(_core.dlpack_version),
        "num_threads": int(_core.get_num_threads()),
        "torch": _torch.__version__,
        "cuda_build": cuda_build,
        "blas": blas,
        "blas_core": _openblas_core(),
    }


def _openblas_core() -> str | None:
    """The core scipy-openblas32 picked (its kernels), when blfft._core loaded it; else None."""
    import ctypes
    import os

    try:  # RTLD_NOLOAD: only a library already loaded (by blfft._core's NEEDED entry)
        lib = ctypes.CDLL("libscipy_openblas.so", mode=os.RTLD_NOLOAD)
    except OSError:
        return None
    corename = lib.scipy_openblas_get_corename
    corename.restype = ctypes.c_char_p
    return corename().decode().strip()


def set_num_threads(n: int) -> None:
    """Threads the CPU backend uses (0: OpenMP's default, e.g. OMP_NUM_THREADS)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads the CPU backend uses."""
    return int(_core.get_num_threads())
