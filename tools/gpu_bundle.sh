#!/usr/bin/env bash
# Builds, here (no GPU needed), everything the GPU check (tools/gpu_check.sh) runs on a GPU
# machine, into the git-ignored folder gpu_bundle/ (at most 48 MiB), so that nothing is compiled
# on the device:
#   bin/     the C++ CUDA tests (blfft_test_cuda_device, blfft_test_cuda_emulation, the cuFFT /
#            cuBLAS stand-in tests) and the GPU benchmark (blfft_gpu_bench), kernels for sm_80 and
#            sm_90; libblfft, GoogleTest and the CUDA runtime linked statically;
#   python/  the Python package (python/blfft) with its extension modules blfft._core and
#            blfft._cuda built for CPython 3.12 (the device's interpreter);
#   lib/     FFTW (float, double) and BLIS (serial) as shared libraries, once for all of the
#            above: linked statically into each of the five large binaries they take 79 MiB, over
#            the 48 MiB limit (BLIS alone is 12 MiB of kernels for every x86 generation);
#            tools/gpu_check.sh puts lib/ first on LD_LIBRARY_PATH, so the device needs none of
#            them installed;
#   lib/fallback/  libgomp.so.1, used only where the machine has no GCC OpenMP runtime;
#   scripts/ bench/cudnn_bench.py and tools/gpu_report.py, as built;
#   MANIFEST.json  commit, whether the tree was dirty, date, architectures, sizes.
# cuFFT (libcufft.so.12) and cuBLAS (libcublas.so.13) are not bundled: the device has them from
# torch's nvidia-cufft / nvidia-cublas wheels.
# Incremental: the build folder build-bundle/ (git-ignored) is kept, and a second run rebuilds only
# what changed. Every compile runs under `nice -n 10` with BLFFT_BUNDLE_JOBS jobs (default 2).
#
#   bash tools/gpu_bundle.sh [--archs "80;90"] [--cpp-only]
#
#   --cpp-only   skip the Python modules (nothing that needs python3.12)
# Environment: BLFFT_PYTHON312 (the CPython 3.12 to build the modules for; default: python3.12 on
# PATH, else pyenv's), BLFFT_BUNDLE_JOBS, BLFFT_BUNDLE_BUILD (default build-bundle).
#
# Then, on the GPU machine, from the repository root with gpu_bundle/ carried along:
#   bash tools/gpu_check.sh            (here, without a GPU: bash tools/gpu_check.sh --no-gpu)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ARCHS="80;90"
CPP_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --archs) ARCHS="$2"; shift ;;
    --cpp-only) CPP_ONLY=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_bundle: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
BUILD="$ROOT/${BLFFT_BUNDLE_BUILD:-build-bundle}"
BUNDLE="$ROOT/gpu_bundle"
JOBS="${BLFFT_BUNDLE_JOBS:-2}"
MAX_MIB=48
START=$(date +%s)
log() { printf '== gpu_bundle [%ss]: %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { echo "gpu_bundle: $*" >&2; exit 1; }

# --- what the build needs ------------------------------------------------------------------------
NVCC="${CUDACXX:-}"
[ -z "$NVCC" ] && NVCC="$(command -v nvcc || true)"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
[ -n "$NVCC" ] || die "nvcc not found (set CUDACXX)"
export CUDACXX="$NVCC"
LIBDIR=/usr/lib/x86_64-linux-gnu
for f in "$LIBDIR/libfftw3.so.3" "$LIBDIR/libfftw3f.so.3" "$LIBDIR/blis-serial/libblis.so.4" \
         "$LIBDIR/libgtest.a"; do
  [ -f "$f" ] || die "$f missing (Debian: libfftw3-dev, libblis-serial-dev, libgtest-dev)"
done
VENV_PY="$ROOT/.venv/bin/python"
[ -x "$VENV_PY" ] || die "no .venv (run tools/setup.sh first: it also installs cuFFT's wheel)"

PY312=""
PY_ARGS=(-DBLFFT_BUILD_PYTHON=OFF)
if [ "$CPP_ONLY" -eq 0 ]; then
  PY312="$(find_python312)"
  [ -n "$PY312" ] || die "no CPython 3.12 found (set BLFFT_PYTHON312, or use --cpp-only)"
  PYBIND11_DIR="$("$VENV_PY" -m pybind11 --cmakedir 2>/dev/null || "$PY312" -m pybind11 --cmakedir)"
  PY_ARGS=(-DBLFFT_BUILD_PYTHON=ON "-DPython_EXECUTABLE=$PY312" "-Dpybind11_DIR=$PYBIND11_DIR")
fi

# --- configure (once) and build ------------------------------------------------------------------
# libblfft static (BLFFT_SHARED=OFF), GoogleTest static (Debian has only static libraries), the
# CUDA runtime static (always in blfft); FFTW and BLIS shared, carried in lib/ (see above).
CONFIG_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBLFFT_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCHS"
             -DBLFFT_SHARED=OFF -DBLFFT_BUILD_TESTS=ON -DBLFFT_BUILD_EXAMPLES=ON -DBLFFT_INSTALL=OFF
             "-DBLFFT_BLAS_LIBRARY=$LIBDIR/blis-serial/libblis.so"
             "-Dpkgcfg_lib_FFTW3F_fftw3f=$LIBDIR/libfftw3f.so"
             "-Dpkgcfg_lib_FFTW3_fftw3=$LIBDIR/libfftw3.so" "${PY_ARGS[@]}")
log "configuring $BUILD (sm $ARCHS; python: ${PY312:-none})"
nice -n 10 cmake -S "$ROOT" -B "$BUILD" "${CONFIG_ARGS[@]}" > "$BUILD.configure.log" 2>&1 ||
  { tail -30 "$BUILD.configure.log"; die "configure failed (log: $BUILD.configure.log)"; }
TARGETS=(blfft_test_cuda_device blfft_test_cuda_emulation blfft_gpu_bench)
grep -q "stand-ins ON" "$BUILD.configure.log" &&
  TARGETS+=(blfft_test_standin_cufft blfft_test_standin_cublas)
[ "$CPP_ONLY" -eq 0 ] && TARGETS+=(_core _cuda)
log "building ${TARGETS[*]} (-j$JOBS)"
nice -n 10 cmake --build "$BUILD" --parallel "$JOBS" --target "${TARGETS[@]}" \
  > "$BUILD.build.log" 2>&1 || { tail -40 "$BUILD.build.log"; die "build failed (log: $BUILD.build.log)"; }

# --- assemble ------------------------------------------------------------------------------------
log "assembling $BUNDLE"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib/fallback" "$BUNDLE/scripts"
for t in "${TARGETS[@]}"; do
  case "$t" in _core|_cuda) continue ;; esac
  f="$(find "$BUILD" -type f -name "$t" -perm -u+x | head -n1)"
  [ -n "$f" ] || die "built target $t not found"
  cp "$f" "$BUNDLE/bin/"
done
if [ "$CPP_ONLY" -eq 0 ]; then
  mkdir -p "$BUNDLE/python"
  (cd python && find blfft -name '*.py' -not -path '*/__pycache__/*' -print0 |
     xargs -0 -I{} cp --parents {} "$BUNDLE/python/")
  for m in _core _cuda; do
    f="$(find "$BUILD/python" -maxdepth 1 -type f -name "$m.cpython-312*.so" | head -n1)"
    [ -n "$f" ] || die "extension module $m for CPython 3.12 not found in $BUILD/python"
    cp "$f" "$BUNDLE/python/blfft/"
  done
fi
# Symbols are not needed on the device (the kernels' line info stays in the fat binaries).
find "$BUNDLE/bin" "$BUNDLE/python" -type f \( -perm -u+x -o -name '*.so' \) \
  -exec strip --strip-unneeded {} + 2>/dev/null || true
cp -L "$LIBDIR/libfftw3.so.3" "$LIBDIR/libfftw3f.so.3" "$LIBDIR/blis-serial/libblis.so.4" \
  "$BUNDLE/lib/"
cp -L "$(g++ -print-file-name=libgomp.so.1)" "$BUNDLE/lib/fallback/" 2>/dev/null || true
cp bench/cudnn_bench.py tools/gpu_report.py "$BUNDLE/scripts/"

# --- checks: nothing the device lacks is needed ----------------------------------------------------
CUFFT_DIR="$(dirname "$(ls "$ROOT"/.venv/lib/python3*/site-packages/nvidia/cu13/lib/libcufft.so.12 | head -n1)")"
CUBLAS_DIR="$(dirname "$(ls "$ROOT"/.venv/lib/python3*/site-packages/nvidia/cu13/lib/libcublas.so.13 | head -n1)")"
missing=""
for f in "$BUNDLE"/bin/* "$BUNDLE"/python/blfft/*.so "$BUNDLE"/lib/*.so*; do
  [ -e "$f" ] || continue
  deps="$(LD_LIBRARY_PATH="$BUNDLE/lib:$CUFFT_DIR:$CUBLAS_DIR" ldd "$f" 2>/dev/null)"
  m="$(grep 'not found' <<<"$deps" || true)"
  [ -n "$m" ] && missing+="$f: $m"$'\n'
  grep -E -q 'libgtest|libcudart\.so' <<<"$deps" && missing+="$f links GoogleTest or libcudart dynamically"$'\n'
  if grep -E 'libfftw3|libblis' <<<"$deps" | grep -v -q "$BUNDLE/lib/"; then
    missing+="$f: FFTW or BLIS not from the bundle's lib/"$'\n'
  fi
done
[ -z "$missing" ] || die "unresolved or unwanted shared libraries:"$'\n'"$missing"

size_kib=$(du -sk "$BUNDLE" | cut -f1)
COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# (grep finds nothing in a clean tree: its status 1 must not end the script under pipefail)
DIRTY="$(git status --porcelain 2>/dev/null | { grep -v -E '^\?\? (gpu_bundle|build-)' || true; } |
  head -c1 | wc -c)"
cat > "$BUNDLE/MANIFEST.json" <<EOF
{"commit": "$COMMIT", "dirty_tree": $([ "$DIRTY" -gt 0 ] && echo true || echo false),
 "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "cuda_architectures": "$ARCHS",
 "nvcc": "$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')",
 "python": "$([ -n "$PY312" ] && "$PY312" -c 'import platform; print(platform.python_version())' || echo none)",
 "bytes": $((size_kib * 1024)), "build_seconds": $(( $(date +%s) - START )),
 "files": [$(cd "$BUNDLE" && find . -type f ! -name MANIFEST.json | sort | sed 's/.*/"&"/' | paste -sd, -)]}
EOF
log "$BUNDLE: $((size_kib / 1024)) MiB ($(find "$BUNDLE" -type f | wc -l) files), commit ${COMMIT:0:12}$([ "$DIRTY" -gt 0 ] && echo ' + local changes')"
if [ "$size_kib" -gt $((MAX_MIB * 1024)) ]; then
  du -ak "$BUNDLE" | sort -rn | head -12 >&2
  die "the bundle is larger than $MAX_MIB MiB"
fi
log "done; device run: bash tools/gpu_check.sh (carry [\"gpu_bundle\"])"
