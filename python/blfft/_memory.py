"""What blfft holds between calls, and the limits on what a call may allocate.

- The buffers Python allocates for a call (outputs, spectra) go through :func:`alloc`, which
  refuses, with ``MemoryError``, one larger than the core's cap (``blfft.set_max_buffer_size``),
  as the core refuses its own buffers.
- Caches kept between calls (the geometry cache, the weight spectra of layers) register here, so
  that :func:`clear_caches` empties them along with the C++ core's plans and pooled buffers and
  the CUDA backend's plans. (The CUDA backend keeps no temporaries between calls: they come from
  torch's caching allocator, see blfft._backends.)
"""

import gc
import numbers
import threading
import weakref
from typing import Optional

import torch
from torch import Tensor

from . import _backends, _core

# ------------------------------------------------------------------------------------------------
# The largest buffer of a call
# ------------------------------------------------------------------------------------------------

# The core's cap on one buffer (blfft::get_max_buffer_bytes), mirrored here so that the spectra
# Python allocates for a call are refused before allocation as the core's own buffers are.
_max_buffer_bytes: Optional[int] = None


def buffer_cap() -> int:
    """The core's cap on one buffer, in bytes (read from the core once, then mirrored)."""
    global _max_buffer_bytes
    if _max_buffer_bytes is None:
        get = getattr(_core, "get_max_buffer_bytes", None)
        _max_buffer_bytes = int(get()) if get is not None else (1 << 62)
    return _max_buffer_bytes


def check_buffer(like: Tensor, shape, what: str, dtype: Optional[torch.dtype] = None) -> int:
    """Bytes of a buffer of `shape` like `like` (in `dtype`, default like's); MemoryError when a
    CPU one exceeds the core's buffer cap (what :func:`alloc` refuses, said before any work
    toward it)."""
    n = 1
    for s in shape:
        n *= int(s)
    itemsize = like.element_size() if dtype is None else dtype.itemsize
    nbytes = n * itemsize
    if like.device.type == "cpu" and nbytes > buffer_cap():
        raise MemoryError(
            f"blfft: the {what} would take {nbytes} bytes, more than the largest buffer allowed "
            f"({buffer_cap()} bytes, blfft.set_max_buffer_size)"
        )
    return nbytes


def alloc(
    like: Tensor,
    shape,
    what: str,
    memory_format=torch.contiguous_format,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """``like.new_empty(shape)`` (in `memory_format`, in `dtype`, default like's) for a buffer of
    a call: MemoryError (not torch's RuntimeError) when it exceeds the core's buffer cap or the
    allocation fails."""
    nbytes = check_buffer(like, shape, what, dtype)
    dtype = like.dtype if dtype is None else dtype
    try:
        if memory_format is not torch.contiguous_format:
            return torch.empty(shape, dtype=dtype, device=like.device, memory_format=memory_format)
        return like.new_empty(shape, dtype=dtype)
    except RuntimeError as e:
        if like.device.type == "cpu" and "can't allocate memory" in str(e):
            raise MemoryError(f"blfft: could not allocate the {what} ({nbytes} bytes): {e}") from e
        raise


def _check_bytes(nbytes, fn: str) -> int:
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral):
        raise TypeError(f"blfft.{fn}: bytes must be an int >= 0, got {nbytes!r}")
    if nbytes < 0:
        raise ValueError(f"blfft.{fn}: bytes must be >= 0, got {nbytes!r}")
    return int(nbytes)


def set_max_buffer_size(nbytes: int) -> None:
    """The largest single buffer (a spectrum, a workspace, an output) a CPU call may allocate, in
    bytes; a call that would need more raises ``MemoryError`` before allocating anything. 0
    restores the default: the machine's physical memory."""
    global _max_buffer_bytes
    nbytes = _check_bytes(nbytes, "set_max_buffer_size")
    _core.set_max_buffer_bytes(nbytes)
    _max_buffer_bytes = int(_core.get_max_buffer_bytes())


def get_max_buffer_size() -> int:
    """The cap set by :func:`set_max_buffer_size`, in bytes."""
    return int(_core.get_max_buffer_bytes())


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


# ------------------------------------------------------------------------------------------------
# Caches held between calls
# ------------------------------------------------------------------------------------------------

# Every live cache (an object with a clear() method), so that clear_caches() can empty them.
_caches: "weakref.WeakSet" = weakref.WeakSet()
_caches_lock = threading.Lock()


def register_cache(cache) -> None:
    """Has :func:`clear_caches` call ``cache.clear()``, for as long as `cache` lives."""
    with _caches_lock:
        _caches.add(cache)


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
    """Releases the memory blfft holds between calls, for good (until calls need it again).

    That is: the C++ core's cached plans (their FFT plans and DFT tables), the idle buffers of its
    workspace pool and its per-thread scratch (``blfft::release_memory()``); the CUDA backend's
    plans and idle cuFFT plans, where it is built (its temporaries are torch's, given back after
    every call: ``torch.cuda.empty_cache()`` releases those); the Python cache of layer
    geometries; and the weight spectra kept by layers made with ``cache_weight_spectrum=True``.
    Then, on glibc, ``malloc_trim(0)`` hands the freed pages back to the operating system (glibc
    would otherwise keep them in the process for reuse). Everything is rebuilt on demand: the
    next call works as before, only slower once (plans are made again). Safe to call at any time,
    also while other threads run blfft calls (those keep what they use until they return).
    """
    with _caches_lock:
        caches = list(_caches)
    for c in caches:
        c.clear()
    release = getattr(_core, "release_memory", None)
    if release is not None:
        release()
    else:  # a core without release_memory (older build): at least the plans
        _core.clear_plan_cache()
    if _backends.cuda_module is not None and _backends.cuda_device_count() > 0:
        _backends.cuda_module.clear_plan_cache()  # (no device: it holds nothing)
    gc.collect()  # layers' spectra and geometries no longer referenced
    _malloc_trim()
