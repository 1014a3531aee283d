"""The two backends and how a call reaches one.

CPU tensors go to ``blfft._core`` (the C++ core's module), CUDA tensors to ``blfft._cuda`` (the
CUDA backend's own module, built only where nvcc and cuFFT were found; docs/design.md 2 and 3).
``blfft._cuda`` is optional: ``import blfft`` works without it, and CUDA tensors then raise
``blfft.BlfftError`` (code ``"unsupported"``) saying why. Every ``_cuda`` call gets torch's
current stream of the tensors' device, so the work is ordered with torch's own on that stream,
and ``tf32=torch.backends.cudnn.allow_tf32`` (:func:`tf32_kw`).
Tensors cross to C++ as DLPack capsules (:func:`dl`), without copies. The temporaries of a
``_cuda`` call (spectra it is not given, transform scratch, cuFFT work areas) come from torch's
caching allocator (:func:`use_torch_allocator`, done on import): torch counts them in
``torch.cuda.memory_allocated``, reuses the memory, and gives CUDA graph captures their own pool.
"""

import functools
import importlib
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _core

# The CUDA backend's module: optional, and never needed by the CPU path. ModuleNotFoundError for
# blfft._cuda itself means it was not built; any other failure (a missing libcufft.so.12, a
# broken install) is kept for the error message and build_info().
# (import_module, not `from . import _cuda`: that turns a missing module into a plain ImportError.)
cuda_import_error: Optional[str] = None
try:
    cuda_module = importlib.import_module(f"{__package__}._cuda")
except ImportError as _e:
    cuda_module = None
    if not (isinstance(_e, ModuleNotFoundError) and _e.name == f"{__package__}._cuda"):
        cuda_import_error = f"{type(_e).__name__}: {_e}"
    del _e

_cuda_devices: Optional[int] = None  # cuda_device_count(), looked up once


def use_torch_allocator(module=None) -> bool:
    """Has blfft._cuda take every temporary from torch's caching allocator
    (``torch.cuda.caching_allocator_alloc(nbytes, device, stream)`` on the call's stream, given
    back with ``caching_allocator_delete`` before the call returns), instead of the backend's
    own default (cudaMallocAsync). False where the module is missing or predates
    ``set_allocator``."""
    module = cuda_module if module is None else module
    if module is None or not hasattr(module, "set_allocator"):
        return False
    module.set_allocator(torch.cuda.caching_allocator_alloc, torch.cuda.caching_allocator_delete)
    return True


use_torch_allocator()


def cuda_device_count() -> int:
    """CUDA devices the CUDA backend can use (0: not built, no driver or no GPU). Cached."""
    global _cuda_devices
    if _cuda_devices is None:
        _cuda_devices = int(cuda_module.device_count()) if cuda_module is not None else 0
    return _cuda_devices


def cuda_unusable_reason() -> Optional[str]:
    """Why CUDA tensors cannot run here, or None when they can."""
    if cuda_module is None:
        if cuda_import_error is not None:
            return f"CUDA backend built but blfft._cuda failed to load ({cuda_import_error})"
        return "CUDA backend not built (this build of blfft runs on the CPU only)"
    if cuda_device_count() == 0:
        return (
            "CUDA backend built, but no GPU usable by it (its device_count() is 0: no GPU, no "
            "driver, or a driver older than the CUDA runtime blfft was built with)"
        )
    return None


def unsupported(message: str) -> Exception:
    """A ``BlfftError`` with code ``"unsupported"`` (what the core raises for the same case)."""
    e = _core.BlfftError(message)
    e.code = "unsupported"
    return e


def check_device(t: Tensor, name: str) -> None:
    """Raises BlfftError unless t is on a device blfft computes on (the CPU, or a CUDA device
    with a usable CUDA backend)."""
    kind = t.device.type
    if kind == "cpu":
        return
    if kind == "cuda":
        if torch.compiler.is_compiling():
            # Dynamo cannot trace the binding's device_count(); the op implementations, which
            # run eagerly inside compiled graphs, check again through backend_for.
            return
        reason = cuda_unusable_reason()
        if reason is not None:
            raise unsupported(f"blfft: {name} is on {t.device}: {reason}")
        return
    raise unsupported(f"blfft: {name} is on {t.device}; blfft runs on the CPU and on CUDA devices")


def backend_for(t: Tensor, name: str, *others: Tuple[str, Optional[Tensor]]):
    """(module, trailing args) for a call on t's device: (_core, ()) for CPU tensors, (_cuda,
    (stream,)) for CUDA ones, the stream being torch's current stream on that device. `others`
    ((name, tensor or None) pairs) must be on the same device."""
    check_device(t, name)
    for other_name, o in others:
        if o is not None and o.device != t.device:
            raise TypeError(f"blfft: {other_name} is on {o.device} but {name} is on {t.device}")
    if t.device.type == "cuda":
        return cuda_module, (torch.cuda.current_stream(t.device).cuda_stream,)
    return _core, ()


def is_cpu(backend) -> bool:
    """Whether `backend` (from :func:`backend_for`) is the CPU core."""
    return backend is _core


def tf32_kw(backend) -> dict:
    """The ``tf32=`` keyword for a compute call of `backend`: for the CUDA module,
    ``torch.backends.cudnn.allow_tf32`` read at the call (the flag torch's own convolutions
    follow), so float mixing on cuBLAS uses TF32 tensor cores exactly when torch would; nothing
    for the CPU core (which accepts the keyword and ignores it)."""
    return {} if backend is _core else {"tf32": bool(torch.backends.cudnn.allow_tf32)}


_to_dlpack = torch.utils.dlpack.to_dlpack


def dl(t: Optional[Tensor]):
    """A DLPack capsule of `t` (None stays None) for the binding.

    torch's C-level exporter makes a legacy capsule in about 1 us; Tensor.__dlpack__ (which the
    binding would otherwise call, asking for a versioned one) spends several more in Python-level
    checks, for every tensor of every call. The binding takes both kinds alike.
    """
    return None if t is None else _to_dlpack(t.detach())


def eager_only(fn):
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
