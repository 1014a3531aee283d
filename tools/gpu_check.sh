#!/usr/bin/env bash
# The GPU check (DESIGN.md section 3): every GPU check of the CUDA backend in one short run, on a
# GPU machine without network access, in under 8 minutes:
#   1. build for the card (CMAKE_CUDA_ARCHITECTURES, default 90) with the CUDA backend ON;
#   2. the C++ CUDA tests against the CPU backend and the oracles (a GPU test that skips counts
#      as a failure here), and the CPU emulation tests;
#   3. the Python package built with pip (blfft._cuda for the card), and its CUDA tests
#      (tests/py/test_cuda.py; a test that skips on a GPU counts as a failure here);
#   4. compute-sanitizer memcheck and racecheck on a small case, where the tool is installed;
#   5. the GPU benchmark: blfft (bench/gpu_bench.cpp) and torch's cuDNN conv2d
#      (bench/cudnn_bench.py, cudnn.benchmark on) in the same run, ResNet-18 CIFAR layer shapes;
#   6. one report, gpu_check_<gpu>_<date>.json (machine, steps, all measurements, and the table
#      as markdown) and the same table as .md, plus the full log, in the output folder. Commit
#      the .json and .md under bench/results/.
# FFTW, OpenBLAS, GoogleTest and pkg-config come from the system where it has them, else from
# third_party_local/ (made here by tools/prepare_gpu_carry.sh; the GPU run carries it).
#
#   bash tools/gpu_check.sh [--out DIR] [--arch LIST] [--build-dir DIR] [--carried-deps]
#                           [--allow-no-gpu] [--quick] [--dry-run]
#
#   --out DIR        where the report goes (default: $OUT if set, else ./gpu_check_out)
#   --arch LIST      CMAKE_CUDA_ARCHITECTURES (default 90)
#   --carried-deps   use third_party_local/ even where the system has the libraries (to test
#                    the carry on a machine that has them)
#   --allow-no-gpu   without a GPU, still build and run what needs none (the GPU steps are then
#                    recorded as skipped); without it, no GPU is an error
#   --quick          a smaller benchmark (2 layers, batch 32)
#   --dry-run        print what would run, run nothing
#
# Device run (from the repository root, after tools/prepare_gpu_carry.sh):
#   run(command="bash tools/gpu_check.sh", carry=["third_party_local"], timeout_s=600)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-$ROOT/gpu_check_out}"
ARCH=90
BUILD="$ROOT/build-gpu"
CARRY="$ROOT/third_party_local"
FORCE_CARRY=0
ALLOW_NO_GPU=0
QUICK=""
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR="$2"; shift ;;
    --arch) ARCH="$2"; shift ;;
    --build-dir) BUILD="$2"; shift ;;
    --carried-deps) FORCE_CARRY=1 ;;
    --allow-no-gpu) ALLOW_NO_GPU=1 ;;
    --quick) QUICK="--quick" ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

START=$(date +%s)
DEADLINE=$((START + 8 * 60 - 20))  # the whole check stays under 8 minutes
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d)"
STEPS="$WORK/steps.jsonl"
: > "$STEPS"
LOG="$OUT_DIR/gpu_check.log"
TEE_PID=""
if [ "$DRY" -eq 0 ]; then
  : > "$LOG"
  exec > >(tee -a "$LOG") 2>&1
  TEE_PID=$!
fi
finish() {  # let tee write the last lines before the files are collected
  if [ -n "$TEE_PID" ]; then
    exec 1>&- 2>&-
    wait "$TEE_PID" 2>/dev/null || sleep 1
  fi
}
trap finish EXIT
FAILED=0

log() { printf '\n== gpu_check [%ss]: %s\n' "$(( $(date +%s) - START ))" "$*"; }
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n' ' '; }
record() {  # record NAME STATUS SECONDS NOTE
  printf '{"step": "%s", "status": "%s", "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" \
    "$(json_str "$4")" >> "$STEPS"
  [ "$2" = "failed" ] && FAILED=1
  return 0
}
# step NAME LIMIT_S CMD...: runs CMD under a timeout (the smaller of LIMIT_S and the time left).
step() {
  local name="$1" limit="$2"
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  if [ "$DRY" -eq 1 ]; then
    printf '[dry-run] %s (limit %ss): %s\n' "$name" "$limit" "$*"
    return 0
  fi
  if [ "$left" -lt 15 ]; then
    log "$name: skipped, out of time"
    record "$name" "skipped" 0 "out of time (8-minute budget)"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name: $*"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ "$rc" -eq 0 ]; then
    record "$name" "passed" "$dt" ""
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    record "$name" "failed" "$dt" "timed out after ${limit}s"
  else
    record "$name" "failed" "$dt" "exit status $rc"
  fi
  return "$rc"
}

# --- the machine -------------------------------------------------------------------------------
HAVE_GPU=0
GPU_NAME="no GPU"
DRIVER="-"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "GPU"; then
  HAVE_GPU=1
  GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"
  DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1)"
fi
if [ "$HAVE_GPU" -eq 0 ] && [ "$ALLOW_NO_GPU" -eq 0 ] && [ "$DRY" -eq 0 ]; then
  echo "gpu_check: no GPU found (nvidia-smi); use --allow-no-gpu to run the parts that need none" >&2
  exit 1
fi
NVCC="${CUDACXX:-}"
[ -z "$NVCC" ] && NVCC="$(command -v nvcc || true)"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
NVCC_VERSION="$([ -n "$NVCC" ] && "$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
PY="$(command -v python3 || true)"
TORCH_VERSION="$([ -n "$PY" ] && "$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)"
COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || cat "$CARRY/COMMIT" 2>/dev/null || echo unknown)"
DATE="$(date -u +%Y-%m-%d)"
SLUG="$(printf '%s' "$GPU_NAME" | tr -c 'A-Za-z0-9' '_' | sed 's/__*/_/g; s/^_//; s/_$//')"
REPORT="$OUT_DIR/gpu_check_${SLUG}_${DATE}"
log "GPU: $GPU_NAME (driver $DRIVER); nvcc $NVCC_VERSION; torch $TORCH_VERSION; commit $COMMIT"

# --- dependencies: the system's, else the carried ones -----------------------------------------
LIBDIR="$CARRY/root/usr/lib/x86_64-linux-gnu"
CARRY_PC="$LIBDIR/pkgconfig"
DEP_ARGS=()
DEP_NOTE=""
need_carry() {
  if [ ! -d "$CARRY/root" ]; then
    echo "gpu_check: $1 is missing here and there is no $CARRY (run tools/prepare_gpu_carry.sh" \
         "on a networked machine and carry third_party_local)" >&2
    exit 1
  fi
}
add_ld_path() { export LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; }

PKGCONF=""
if [ "$FORCE_CARRY" -eq 0 ] && command -v pkg-config >/dev/null 2>&1; then
  PKGCONF="$(command -v pkg-config)"
fi
if [ -n "$PKGCONF" ] && "$PKGCONF" --exists fftw3f fftw3 2>/dev/null; then
  DEP_NOTE+="FFTW: system; "
else
  need_carry "FFTW3 (or pkg-config)"
  add_ld_path "$LIBDIR"
  if [ -z "$PKGCONF" ]; then
    PKGCONF="$CARRY/root/usr/bin/pkgconf"
    DEP_ARGS+=("-DPKG_CONFIG_EXECUTABLE=$PKGCONF")
  fi
  if [ "$FORCE_CARRY" -eq 1 ]; then
    export PKG_CONFIG_LIBDIR="$CARRY_PC"  # the carried .pc files only
  else
    export PKG_CONFIG_PATH="$CARRY_PC${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  fi
  DEP_NOTE+="FFTW: carried; "
fi
if [ "$FORCE_CARRY" -eq 0 ] && [ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so ]; then
  DEP_NOTE+="OpenBLAS: system; "
else
  need_carry "OpenBLAS (OpenMP flavour)"
  DEP_ARGS+=("-DBLFFT_BLAS_LIBRARY=$LIBDIR/openblas-openmp/libopenblas.so.0")
  add_ld_path "$LIBDIR/openblas-openmp"
  for lib in libgfortran.so.5 libquadmath.so.0; do
    if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
      add_ld_path "$CARRY/fallback/usr/lib/x86_64-linux-gnu"
      DEP_NOTE+="$lib: carried; "
      break
    fi
  done
  DEP_NOTE+="OpenBLAS: carried; "
fi
have_system_gtest() {
  for d in /usr/lib/x86_64-linux-gnu/cmake/GTest /usr/lib/cmake/GTest /usr/local/lib/cmake/GTest \
           /usr/lib64/cmake/GTest; do
    [ -f "$d/GTestConfig.cmake" ] && return 0
  done
  return 1
}
if [ "$FORCE_CARRY" -eq 0 ] && have_system_gtest; then
  DEP_NOTE+="GoogleTest: system"
else
  need_carry "GoogleTest"
  DEP_ARGS+=("-DGTest_DIR=$LIBDIR/cmake/GTest")
  DEP_NOTE+="GoogleTest: carried"
fi
# cuFFT: the toolkit's, else the nvidia-cufft wheel next to torch.
if ! ls /usr/local/cuda/lib64/libcufft.so* >/dev/null 2>&1 && [ -n "$PY" ]; then
  CUFFT_ROOT="$("$PY" - <<'EOF'
import glob, os, sys
for p in sys.path:
    for d in glob.glob(os.path.join(p, "nvidia", "cu13")) + glob.glob(os.path.join(p, "nvidia", "cufft")):
        if os.path.exists(os.path.join(d, "include", "cufft.h")) and glob.glob(os.path.join(d, "lib", "libcufft.so*")):
            print(d)
            sys.exit(0)
EOF
)"
  if [ -n "$CUFFT_ROOT" ]; then
    DEP_ARGS+=("-DBLFFT_CUFFT_ROOT=$CUFFT_ROOT")
    DEP_NOTE+="; cuFFT: $CUFFT_ROOT"
  fi
fi
log "dependencies: $DEP_NOTE"
record "dependencies" "passed" 0 "$DEP_NOTE"

# --- 1. build ------------------------------------------------------------------------------------
[ -n "$NVCC" ] && export CUDACXX="$NVCC"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
step configure 120 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBLFFT_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" -DBLFFT_BUILD_TESTS=ON \
  -DBLFFT_BUILD_EXAMPLES=ON -DBLFFT_BUILD_PYTHON=OFF -DBLFFT_INSTALL=OFF "${DEP_ARGS[@]}"
BUILT=$?
if [ "$BUILT" -eq 0 ]; then
  step build 300 cmake --build "$BUILD" --parallel "$(nproc)" --target blfft_test_cuda_device \
    blfft_test_cuda_emulation blfft_gpu_bench
  BUILT=$?
fi

# --- 2. C++ tests --------------------------------------------------------------------------------
# The device tests must all run on a GPU: a CudaDevice* test that skips is a failure here.
device_tests() {
  "$BUILD/tests/cpp/blfft_test_cuda_device" --gtest_output="json:$WORK/device_tests.json"
  local rc=$?
  [ "$rc" -ne 0 ] && return "$rc"
  [ "$HAVE_GPU" -eq 0 ] && return 0
  "$PY" - "$WORK/device_tests.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
skipped = [f"{s['name']}.{t['name']}" for s in r["testsuites"] for t in s["testsuite"]
           if t.get("result") == "SKIPPED" and not s["name"].startswith("CudaNoDevice")]
print(f"device tests: {r['tests']} run, {r['failures']} failed, skipped on a GPU: {skipped}")
sys.exit(1 if skipped else 0)
EOF
}
export -f device_tests
export BUILD WORK HAVE_GPU PY
if [ "$BUILT" -eq 0 ] || [ "$DRY" -eq 1 ]; then
  step cpp_cuda_device_tests 240 bash -c device_tests
  step cpp_cuda_emulation_tests 120 "$BUILD/tests/cpp/blfft_test_cuda_emulation"
fi

# --- 3. Python CUDA tests ----------------------------------------------------------------------------
# The package built as users build it (pip + scikit-build-core; no network: no build isolation, the
# machine's scikit-build-core, pybind11 and torch, --no-deps), with the CUDA backend required
# (BLFFT_CUDA=ON: a CPU-only build would only skip the GPU tests) for this card's architecture,
# into a private folder (--target: the machine's Python environment is left alone). Then
# tests/py/test_cuda.py: blfft._cuda and the dispatch of CUDA tensors on torch's current stream;
# forward and every gradient against the CPU backend and torch (rate 0: all of test_exact.py's
# cases, on CUDA), rate 0.5 and energy mode against the CPU backend; non-contiguous inputs; a
# non-default stream; torch.compile; blfft.nn modules on .cuda(); opcheck. On a GPU, a test that
# skips counts as a failure (as for the C++ device tests).
PYDIR="$WORK/python"
PY_CMAKE_ARGS="${DEP_ARGS[*]}"
python_build() {
  CMAKE_ARGS="$PY_CMAKE_ARGS" "$PY" -m pip install --no-build-isolation --no-deps --no-cache-dir \
    --no-compile --target "$PYDIR" -C cmake.define.BLFFT_CUDA=ON \
    -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$ARCH" -C "build-dir=$BUILD/wheel" "$ROOT" &&
    PYTHONPATH="$PYDIR" "$PY" -c 'import blfft, pprint; print(blfft.__file__); pprint.pprint(blfft.build_info())'
}
python_tests() {
  # Without a GPU (--allow-no-gpu) only the tests that need none run, so that this step's
  # "passed" counts no skipped test; the GPU ones are recorded as skipped below.
  local select=()
  [ "$HAVE_GPU" -eq 0 ] && select=(-m "not cuda")
  PYTHONPATH="$PYDIR" "$PY" -m pytest "$ROOT/tests/py/test_cuda.py" "${select[@]}" \
    -p no:cacheprovider -q -rs --junitxml="$WORK/python_tests.xml"
  local rc=$?
  [ "$rc" -ne 0 ] && return "$rc"
  "$PY" - "$WORK/python_tests.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
count = lambda key: sum(int(s.get(key, 0)) for s in suites)
skipped = [f"{c.get('classname')}.{c.get('name')}" for s in suites for c in s.iter("testcase")
           if c.find("skipped") is not None]
print(f"python CUDA tests: {count('tests')} run, {count('failures')} failed, "
      f"{count('errors')} errors, skipped: {skipped}")
sys.exit(1 if skipped or count("tests") == 0 else 0)
EOF
}
export -f python_build python_tests
export PYDIR PY_CMAKE_ARGS ARCH ROOT
if [ -z "$PY" ] || [ "$TORCH_VERSION" = "none" ]; then
  record "python_cuda_tests" "skipped" 0 "no python3 with torch"
else
  if step python_build 240 bash -c python_build || [ "$DRY" -eq 1 ]; then
    step python_cuda_tests 240 bash -c python_tests  # from $ROOT: pyproject.toml's pytest setup
    [ "$HAVE_GPU" -eq 0 ] && record "python_cuda_gpu_tests" "skipped" 0 "no GPU: only the tests that need none ran"
  else
    record "python_cuda_tests" "skipped" 0 "the Python package did not build"
  fi
fi

# --- 4. compute-sanitizer ---------------------------------------------------------------------------
SANITIZER=/usr/local/cuda/bin/compute-sanitizer
if [ "$HAVE_GPU" -eq 1 ] && [ -x "$SANITIZER" ] && [ "$BUILT" -eq 0 ] || [ "$DRY" -eq 1 ]; then
  for tool in memcheck racecheck; do
    step "sanitizer_$tool" 150 "$SANITIZER" --tool "$tool" --error-exitcode 9 \
      "$BUILD/tests/cpp/blfft_test_cuda_device" --gtest_filter='CudaDeviceSmall.*'
  done
else
  record "sanitizer" "skipped" 0 "no GPU, no build, or no $SANITIZER"
fi

# --- 5. benchmarks ------------------------------------------------------------------------------------
if [ "$HAVE_GPU" -eq 1 ] && [ "$BUILT" -eq 0 ] || [ "$DRY" -eq 1 ]; then
  step bench_blfft 150 "$BUILD/bench/blfft_gpu_bench" --out "$WORK/blfft.jsonl" $QUICK
  if [ -n "$PY" ] && [ "$TORCH_VERSION" != "none" ]; then
    step bench_cudnn 180 "$PY" "$ROOT/bench/cudnn_bench.py" --out "$WORK/cudnn.jsonl" $QUICK
  else
    record "bench_cudnn" "skipped" 0 "no python3 with torch"
  fi
else
  record "benchmarks" "skipped" 0 "no GPU or no build"
fi

# --- 6. report -------------------------------------------------------------------------------------------
if [ "$DRY" -eq 1 ]; then
  echo "[dry-run] report: $REPORT.json, $REPORT.md; log: $LOG"
  exit 0
fi
cat > "$WORK/machine.json" <<EOF
{"gpu": "$(json_str "$GPU_NAME")", "driver": "$(json_str "$DRIVER")",
 "nvcc": "$(json_str "$NVCC_VERSION")", "torch": "$(json_str "$TORCH_VERSION")",
 "cuda_architectures": "$ARCH", "commit": "$COMMIT", "date": "$DATE",
 "cpu_cores": $(nproc), "dependencies": "$(json_str "$DEP_NOTE")",
 "seconds": $(( $(date +%s) - START ))}
EOF
if [ -n "$PY" ]; then
  "$PY" "$ROOT/tools/gpu_report.py" --steps "$STEPS" --blfft "$WORK/blfft.jsonl" \
    --cudnn "$WORK/cudnn.jsonl" --machine "$WORK/machine.json" --out "$REPORT" || FAILED=1
else
  cp "$STEPS" "$REPORT.steps.jsonl"
  FAILED=1
fi
log "report: $REPORT.json, $REPORT.md; log: $LOG; $(( $(date +%s) - START )) s in all"
rm -rf "$WORK"
exit "$FAILED"
