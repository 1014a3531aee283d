"""blfft: band-limited FFT convolution for PyTorch (Dziedzic et al., ICML 2019).

Convolutions that keep only the low-frequency Fourier coefficients of the input, the filter and
the gradients, in the forward pass and in both backward passes; the compression rate trades
accuracy for compute and memory.

- :mod:`blfft.functional`: ``conv1d`` / ``conv2d`` with torch's conventions plus
  ``compress_rate`` / ``energy``;
- :mod:`blfft.nn`: ``Conv1d`` / ``Conv2d`` modules (subclasses of torch's);
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
    _core,
    _ops,  # registers torch.ops.blfft.*; imports blfft._cuda where it exists
    functional,
    nn,
)
from ._core import BlfftError
from ._ops import (
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
    ``torch`` (the torch version in use).
    """
    gpu = bool(_torch.cuda.is_available())
    cuda = _ops._cuda
    devices = _ops.cuda_device_count()
    return {
        "version": __version__,
        "cuda_built": cuda is not None,
        "cuda_architectures": [] if cuda is None else list(cuda.cuda_architectures),
        "cuda_import_error": _ops._cuda_import_error,
        "gpu_available": gpu,
        "cuda_device_count": devices,
        "cuda_usable": cuda is not None and gpu and devices > 0,
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


def clear_caches() -> None:
    """Releases the memory blfft holds between calls, for good (until calls need it again).

    That is: the C++ core's cached plans (their FFT plans and DFT tables), the idle buffers of its
    workspace pool and its per-thread scratch (``blfft::release_memory()``); the CUDA backend's
    plans and its pools' idle device memory, where it is built; the Python cache of layer
    geometries; and the weight spectra kept by layers made with ``cache_weight_spectrum=True``.
    Then, on glibc, ``malloc_trim(0)`` hands the freed pages back to the operating system (glibc
    would otherwise keep them in the process for reuse). Everything is rebuilt on demand: the
    next call works as before, only slower once (plans are made again). Safe to call at any time,
    also while other threads run blfft calls (those keep what they use until they return).
    """
    _ops.clear_caches()


def set_max_idle_memory(nbytes: int) -> None:
    """The most bytes the CPU backend's workspace pool keeps idle between calls, for reuse by the
    next ones (fresh multi-megabyte buffers cost page faults on every call). 0 keeps none (every
    call allocates afresh). Default: 128 MiB. Buffers in use by running calls do not count."""
    nbytes = _check_bytes(nbytes, "set_max_idle_memory")
    _core.set_max_idle_bytes(nbytes)


def get_max_idle_memory() -> int:
    """The bound set by :func:`set_max_idle_memory`, in bytes."""
    return int(_core.get_max_idle_bytes())


def idle_memory() -> int:
    """Bytes the CPU backend's workspace pool holds idle right now."""
    return int(_core.idle_bytes())


def set_max_buffer_size(nbytes: int) -> None:
    """The largest single buffer (a spectrum, a workspace, an output) a CPU call may allocate, in
    bytes; a call that would need more raises ``MemoryError`` before allocating anything. 0
    restores the default: the machine's physical memory."""
    nbytes = _check_bytes(nbytes, "set_max_buffer_size")
    _core.set_max_buffer_bytes(nbytes)
    _ops._max_buffer_bytes = int(_core.get_max_buffer_bytes())


def get_max_buffer_size() -> int:
    """The cap set by :func:`set_max_buffer_size`, in bytes."""
    return int(_core.get_max_buffer_bytes())


def _check_bytes(nbytes, fn: str) -> int:
    import numbers

    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral):
        raise TypeError(f"blfft.{fn}: bytes must be an int >= 0, got {nbytes!r}")
    if nbytes < 0:
        raise ValueError(f"blfft.{fn}: bytes must be >= 0, got {nbytes!r}")
    return int(nbytes)
