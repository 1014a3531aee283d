"""PEP 517 build backend of blfft: scikit-build-core, plus cuFFT as a build requirement where
the CUDA backend will be built.

Everything is scikit-build-core's (``scikit_build_core.build``), except that
``get_requires_for_build_wheel`` (and ``_editable``) add the pinned ``nvidia-*`` packages whose
headers and libraries ``blfft._cuda`` is compiled and linked against, when

- an nvcc is found (``CUDACXX``, ``nvcc`` on ``PATH``, ``$CUDA_HOME``/``$CUDA_PATH``, or
  ``/usr/local/cuda/bin/nvcc``: the places ``cmake/blfftCuda.cmake`` looks), and
- the CUDA backend is not switched off (environment ``BLFFT_CUDA=OFF`` or
  ``-C cmake.define.BLFFT_CUDA=OFF``), and
- no cuFFT was named explicitly (``BLFFT_CUFFT_ROOT`` in the environment or as a define).

Static ``build-system.requires`` cannot say "only where nvcc exists" (PEP 508 markers see the
platform, not the tools), and without them an isolated build (``pip install .``) finds no cuFFT
and silently builds a CPU-only blfft. With them, ``cmake/blfftCuda.cmake`` finds cuFFT in the build
environment, asking the building interpreter (never the source tree's ``.venv`` or
``$VIRTUAL_ENV``), so that every build of one source uses the same pinned cuFFT headers.
At run time ``blfft._cuda`` loads ``libcufft.so.12`` and ``libcublas.so.13`` from the
``nvidia-cufft`` and ``nvidia-cublas`` wheels in the same site-packages (RUNPATH
``$ORIGIN/../nvidia/cu13/lib``): the extra ``blfft[cuda]``, or what torch's CUDA 13 builds install.
"""

from __future__ import annotations

import os
import shutil

from scikit_build_core.build import *  # noqa: F403  (the PEP 517 hooks we do not change)
from scikit_build_core.build import (
    get_requires_for_build_editable as _skb_requires_editable,
)
from scikit_build_core.build import (
    get_requires_for_build_wheel as _skb_requires_wheel,
)

# The cuFFT and cuBLAS the CUDA backend is built against (CUDA 13: headers, libcufft.so.12 and
# libcublas.so.13 under site-packages/nvidia/cu13/; cuBLAS does the mixing GEMMs).
CUDA_BUILD_REQUIRES = ["nvidia-cufft==12.0.0.61", "nvidia-cublas==13.10.0.20"]


def _setting(config_settings, key: str) -> str | None:
    """A value from the environment, else from -C cmake.define.KEY=... / -C KEY=..."""
    if os.environ.get(key):
        return os.environ[key]
    for k in (f"cmake.define.{key}", key):
        v = (config_settings or {}).get(k)
        if isinstance(v, list):
            v = v[-1] if v else None
        if v:
            return str(v)
    return None


def find_nvcc() -> str | None:
    """The nvcc cmake/blfftCuda.cmake would use, or None."""
    if os.environ.get("CUDACXX"):
        return os.environ["CUDACXX"] if os.path.exists(os.environ["CUDACXX"]) else None
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.exists(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def cuda_build_requires(config_settings=None) -> list[str]:
    """The extra build requirements for the CUDA backend here (empty: none wanted or needed)."""
    if (_setting(config_settings, "BLFFT_CUDA") or "AUTO").upper() == "OFF":
        return []
    if _setting(config_settings, "BLFFT_CUFFT_ROOT"):
        return []
    if find_nvcc() is None:
        return []
    return list(CUDA_BUILD_REQUIRES)


def get_requires_for_build_wheel(config_settings=None):
    return [*_skb_requires_wheel(config_settings), *cuda_build_requires(config_settings)]


def get_requires_for_build_editable(config_settings=None):
    return [*_skb_requires_editable(config_settings), *cuda_build_requires(config_settings)]
