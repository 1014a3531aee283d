#!/usr/bin/env bash
# The GPU check of the CUDA backend (docs/design.md section 3), run from the prebuilt bundle
# (tools/gpu_bundle.sh builds gpu_bundle/ on a machine without a GPU); nothing is compiled here.
# In this order, each step under its own time limit, one report line as each finishes, and the
# report rewritten after every step (so a run cut off still says what passed):
#   a. correctness (at most 3 min): the bundle loads (its libraries resolve); the CPU emulation
#      and cuFFT / cuBLAS stand-in tests; the C++ CUDA tests against the CPU backend and the
#      oracles (bin/blfft_test_cuda_device: every CudaDevice* test must run, a skip is a
#      failure); the Python CUDA tests (tests/py/test_cuda.py and test_cuda_half.py, the float16 /
#      bfloat16 path, with the bundle's blfft: forward and
#      gradients against torch.nn.functional and the CPU backend, float32 / float64, rates,
#      stride / dilation / groups / padding modes, energy mode, streams, torch.compile, CUDA
#      graphs; a skip is a failure);
#   b. compute-sanitizer memcheck and racecheck on the small cases (CudaDeviceSmall.*), checking
#      blfft's own kernels only (at most 2 min);
#   c. the quick benchmark against cuDNN: blfft (bin/blfft_gpu_bench --quick) and
#      torch.nn.functional.conv2d with cudnn.benchmark on, strict float32 and TF32 as torch's
#      default, ResNet-18 layer shapes, batch 32, rates 0 / 0.5 / 0.75, fwd+bwd (at most 2 min).
# The whole run stays under 8 minutes. Report: gpu_check_<gpu>_<date>.json (machine, steps,
# measurements, the markdown) and .md, plus gpu_check.log, in $OUT (or --out, or gpu_check_out/).
# Commit the .json and .md under bench/results/gpu/.
#
#   bash tools/gpu_check.sh [--no-gpu] [--bundle DIR] [--out DIR]
#
#   --no-gpu   on a machine without a GPU (CI): run every part that needs none (the bundle's
#              libraries resolve, the Python 3.12 modules import, the emulation and stand-in
#              tests, the no-device refusal of the C++ CUDA tests); the GPU steps are reported as
#              skipped. Without --no-gpu and without a GPU the check fails at once.
# Device run (the tool's run verb, from the repository root):
#   run(command="bash tools/gpu_check.sh", carry=["gpu_bundle"], timeout_s=600)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
set +e  # a failing step is recorded, not fatal
BUNDLE="$ROOT/gpu_bundle"
OUT_DIR="${OUT:-$ROOT/gpu_check_out}"
NO_GPU=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-gpu) NO_GPU=1 ;;
    --bundle) BUNDLE="$(cd "$2" && pwd)"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

START=$(date +%s)
DEADLINE=$((START + 8 * 60 - 10))
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d)"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
finish() {
  rm -rf "$WORK"
  exec 1>&- 2>&-
  wait "$TEE_PID" 2>/dev/null || true
}
trap finish EXIT
STEPS="$OUT_DIR/gpu_check_steps.jsonl"
: > "$STEPS"
FAILED=0
now() { date +%s; }
log() { printf '== gpu_check [%ss]: %s\n' "$(( $(now) - START ))" "$*"; }

# --- the machine ---------------------------------------------------------------------------------
HAVE_GPU=0
GPU_NAME="no GPU"
DRIVER="-"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "GPU"; then
  HAVE_GPU=1
  GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"
  DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1)"
fi
if [ "$HAVE_GPU" -eq 0 ] && [ "$NO_GPU" -eq 0 ]; then
  echo "gpu_check: no GPU found (nvidia-smi); on a machine without one run: bash tools/gpu_check.sh --no-gpu" >&2
  exit 1
fi
RUN_GPU=$(( HAVE_GPU && !NO_GPU ))
MODE=$([ "$RUN_GPU" -eq 1 ] && echo "gpu" || echo "no-gpu")
# Python: the device's python3 (with torch); without a GPU, a CPython 3.12 for the modules' smoke
# test (the bundle's modules are for 3.12) and any python3 for the report.
PY="$(command -v python3 || true)"
PY312="$(find_python312 "$PY")"
TORCH_VERSION="$([ -n "$PY" ] && "$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)"
COMMIT="$(sed -n 's/.*"commit": "\([^"]*\)".*/\1/p' "$BUNDLE/MANIFEST.json" 2>/dev/null | head -n1)"
DATE="$(date -u +%Y-%m-%d)"
SLUG="$(printf '%s' "$GPU_NAME" | tr -c 'A-Za-z0-9' '_' | sed 's/__*/_/g; s/^_//; s/_$//')"
[ "$RUN_GPU" -eq 0 ] && SLUG="no_gpu"
REPORT="$OUT_DIR/gpu_check_${SLUG}_${DATE}"

# cuFFT and cuBLAS: torch's nvidia-cufft / nvidia-cublas wheels on the device (or .venv's here);
# FFTW and BLIS: the bundle's lib/ (first); libgomp: the machine's, else the bundle's
# lib/fallback/ (last).
nvidia_lib_dir() {  # nvidia_lib_dir LIBNAME SUBDIR: the first wheel folder holding LIBNAME.so.*
  for p in $( [ -n "$PY" ] && "$PY" -c 'import sys; print(" ".join(sys.path))' 2>/dev/null) \
           "$ROOT"/.venv/lib/python3*/site-packages; do
    for d in "$p/nvidia/cu13/lib" "$p/nvidia/$2/lib"; do
      ls "$d/$1".so.* >/dev/null 2>&1 && { echo "$d"; return; }
    done
  done
}
CUFFT_DIR="$(nvidia_lib_dir libcufft cufft)"
CUBLAS_DIR="$(nvidia_lib_dir libcublas cublas)"
[ "$CUBLAS_DIR" = "$CUFFT_DIR" ] && CUBLAS_DIR=""
export LD_LIBRARY_PATH="$BUNDLE/lib:${CUFFT_DIR:+$CUFFT_DIR:}${CUBLAS_DIR:+$CUBLAS_DIR:}${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$BUNDLE/lib/fallback"

json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  '; }
write_report() {  # the report as it stands (rewritten after every step)
  cat > "$WORK/machine.json" <<EOF
{"gpu": "$(json_str "$GPU_NAME")", "driver": "$(json_str "$DRIVER")", "mode": "$MODE",
 "torch": "$(json_str "$TORCH_VERSION")", "commit": "$(json_str "${COMMIT:-unknown}")",
 "bundle": $(cat "$BUNDLE/MANIFEST.json" 2>/dev/null | tr '\n' ' ' || echo null),
 "date": "$DATE", "cpu_cores": $(nproc), "seconds": $(( $(now) - START ))}
EOF
  local rpy="${PY:-$PY312}"
  [ -n "$rpy" ] || return 0
  "$rpy" "$BUNDLE/scripts/gpu_report.py" --steps "$STEPS" --blfft "$WORK/blfft.jsonl" \
    --cudnn "$WORK/cudnn.jsonl" --machine "$WORK/machine.json" --out "$REPORT" --quiet \
    2>/dev/null || "$rpy" "$ROOT/tools/gpu_report.py" --steps "$STEPS" --blfft "$WORK/blfft.jsonl" \
    --cudnn "$WORK/cudnn.jsonl" --machine "$WORK/machine.json" --out "$REPORT" --quiet
}
record() {  # record NAME STATUS SECONDS NOTE
  printf '{"step": "%s", "status": "%s", "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" \
    "$(json_str "$4")" >> "$STEPS"
  [ "$2" = "failed" ] && FAILED=1
  printf '== gpu_check: %-26s %-8s %4ss  %s\n' "$1" "$2" "$3" "$4"
  write_report
  return 0
}
skip() { record "$1" "skipped" 0 "$2"; }
# step NAME LIMIT GROUP_END CMD...: CMD under a timeout (the least of LIMIT, the group's end and the
# run's end); its output goes to the log.
step() {
  local name="$1" limit="$2" group_end="$3"
  shift 3
  local end=$(( group_end < DEADLINE ? group_end : DEADLINE ))
  local left=$(( end - $(now) ))
  if [ "$left" -lt 5 ]; then
    skip "$name" "out of time (its group's or the run's limit)"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name (limit ${limit}s): $*"
  local t0 rc
  t0=$(now)
  timeout --kill-after=5 "$limit" "$@"
  rc=$?
  local dt=$(( $(now) - t0 ))
  if [ "$rc" -eq 0 ]; then
    record "$name" "passed" "$dt" "$(cat "$WORK/note" 2>/dev/null)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    record "$name" "failed" "$dt" "timed out after ${limit}s"
  elif [ "$rc" -eq 77 ]; then
    record "$name" "unsupported" "$dt" "$(cat "$WORK/note" 2>/dev/null)"
  else
    record "$name" "failed" "$dt" "exit status $rc $(cat "$WORK/note" 2>/dev/null)"
  fi
  rm -f "$WORK/note"
  return "$rc"
}
export WORK BUNDLE ROOT PY PY312 RUN_GPU

log "mode $MODE; GPU: $GPU_NAME (driver $DRIVER); torch $TORCH_VERSION; python3.12: ${PY312:-none}"
log "bundle: $BUNDLE, commit ${COMMIT:-?}; cuFFT from ${CUFFT_DIR:-nowhere}"
if [ ! -f "$BUNDLE/MANIFEST.json" ]; then
  record "bundle" "failed" 0 "no $BUNDLE/MANIFEST.json: build it with bash tools/gpu_bundle.sh (here), carry gpu_bundle"
  exit 1
fi

# =================================================================================================
# a. correctness (3 minutes)
# =================================================================================================
A_END=$(( $(now) + 180 ))

bundle_loads() {  # every executable and module resolves its libraries; note what it links
  local bad=0
  for f in "$BUNDLE"/bin/* "$BUNDLE"/python/blfft/*.so "$BUNDLE"/lib/*.so*; do
    [ -e "$f" ] || continue
    if ldd "$f" | grep -q 'not found'; then
      echo "unresolved in $f:"; ldd "$f" | grep 'not found'; bad=1
    fi
  done
  [ -e "$BUNDLE/bin/blfft_test_cuda_device" ] || { echo "bin/blfft_test_cuda_device missing"; bad=1; }
  echo "cuFFT: $(ldd "$BUNDLE/bin/blfft_test_cuda_device" | sed -n 's/.*libcufft.so.[0-9]* => \([^ ]*\).*/\1/p')," \
    "cuBLAS: $(ldd "$BUNDLE/bin/blfft_test_cuda_device" | sed -n 's/.*libcublas.so.[0-9]* => \([^ ]*\).*/\1/p')" > "$WORK/note"
  return "$bad"
}
export -f bundle_loads
step bundle 20 "$A_END" bash -c bundle_loads

cpu_tests() {  # the emulation and the stand-in tests: no GPU involved
  local rc=0 t
  for t in blfft_test_standin_cufft blfft_test_standin_cublas blfft_test_cuda_emulation; do
    [ -x "$BUNDLE/bin/$t" ] || continue
    "$BUNDLE/bin/$t" --gtest_brief=1 || rc=1
  done
  return "$rc"
}
export -f cpu_tests
step cpu_emulation_tests 60 "$A_END" bash -c cpu_tests

device_tests() {
  local json="$WORK/device_tests.json"
  if [ "$RUN_GPU" -eq 0 ]; then
    # Without a GPU only the clean refusal (CudaNoDevice.*) can run; it must pass, not skip.
    "$BUNDLE/bin/blfft_test_cuda_device" --gtest_filter='CudaNoDevice.*' --gtest_brief=1 \
      --gtest_output="json:$json" || return 1
  else
    "$BUNDLE/bin/blfft_test_cuda_device" --gtest_brief=1 --gtest_output="json:$json" || return 1
  fi
  "${PY:-$PY312}" - "$json" "$RUN_GPU" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
gpu = sys.argv[2] == "1"
tests = [(s["name"], t["name"], t.get("result")) for s in r["testsuites"] for t in s["testsuite"]]
bad = [f"{s}.{t}" for s, t, res in tests if res == "SKIPPED" and (gpu != s.startswith("CudaNoDevice"))]
ran = [t for t in tests if t[2] != "SKIPPED"]
note = f"{len(ran)} ran, {r['failures']} failed" + (f"; skipped where they must run: {bad}" if bad else "")
open(sys.argv[1] + ".note", "w").write(note)
print(note)
sys.exit(1 if bad or not ran else 0)
EOF
  local rc=$?
  cp "$json.note" "$WORK/note" 2>/dev/null
  return "$rc"
}
export -f device_tests
if [ "$RUN_GPU" -eq 1 ]; then
  step cpp_cuda_device_tests 90 "$A_END" bash -c device_tests
else
  step cpp_cuda_no_device_tests 30 "$A_END" bash -c device_tests
  skip cpp_cuda_device_tests "no GPU: the CudaDevice* tests need one"
fi

python_modules() {  # the bundle's CPython 3.12 modules import and answer, without torch
  [ -n "$PY312" ] || { echo "no CPython 3.12 here" > "$WORK/note"; return 1; }
  "$PY312" - "$BUNDLE/python" <<'EOF'
import importlib.util, os, sys, types
root = os.path.join(sys.argv[1], "blfft")
pkg = types.ModuleType("blfft")  # a bare package: blfft/__init__.py needs torch
pkg.__path__ = [root]
sys.modules["blfft"] = pkg
def load(name):
    path = next(os.path.join(root, f) for f in os.listdir(root) if f.startswith(name + ".cpython-312"))
    spec = importlib.util.spec_from_file_location("blfft." + name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["blfft." + name] = mod
    spec.loader.exec_module(mod)
    return mod
core = load("_core")
cuda = load("_cuda")
assert cuda.compiled() is True
n = cuda.device_count()
archs = list(cuda.cuda_architectures)
assert "80" in archs and "90" in archs, archs
print(f"blfft._core {core.__version__ if hasattr(core, '__version__') else ''} and blfft._cuda "
      f"{cuda.__version__} import under CPython {sys.version.split()[0]}; device_count() = {n}; "
      f"architectures {archs}")
EOF
}
python_tests() {  # tests/py/test_cuda.py and test_cuda_half.py with the bundle's blfft (device)
  local xml="$WORK/python_tests.xml"
  PYTHONPATH="$BUNDLE/python" "$PY" -m pytest "$ROOT/tests/py/test_cuda.py" \
    "$ROOT/tests/py/test_cuda_half.py" -q -p no:cacheprovider \
    -rs --durations=8 --junitxml="$xml"
  local rc=$?
  "$PY" - "$xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
count = lambda key: sum(int(s.get(key, 0)) for s in suites)
cases = [(c.get("name"), c.find("skipped")) for s in suites for c in s.iter("testcase")]
# A skip is a failure on a GPU, except the tests that need a second GPU on a one-GPU machine.
two = [n for n, k in cases if k is not None and "two CUDA devices" in (k.get("message") or "")]
skipped = [n for n, k in cases if k is not None and n not in two]
note = (f"{count('tests')} tests, {count('failures')} failed, {count('errors')} errors"
        + (f"; skipped on a GPU: {skipped[:8]}" if skipped else "")
        + (f"; needing two GPUs, skipped: {two}" if two else ""))
open(sys.argv[1] + ".note", "w").write(note)
print(note)
sys.exit(1 if skipped or count("tests") == 0 else 0)
EOF
  local rc2=$?
  cp "$xml.note" "$WORK/note" 2>/dev/null
  [ "$rc" -eq 0 ] && return "$rc2"
  return "$rc"
}
export -f python_modules python_tests
step python_modules 30 "$A_END" bash -c python_modules
if [ "$RUN_GPU" -eq 1 ]; then
  if [ "$TORCH_VERSION" = "none" ]; then
    record python_cuda_tests failed 0 "no python3 with torch"
  else
    step python_cuda_tests 150 "$A_END" bash -c python_tests
  fi
else
  skip python_cuda_tests "no GPU: tests/py/test_cuda.py needs one (and torch for CPython 3.12)"
fi

# =================================================================================================
# b. compute-sanitizer (2 minutes)
# =================================================================================================
B_END=$(( $(now) + 120 ))
SANITIZER="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
sanitize() {  # sanitize TOOL: the small cases, blfft's kernels only
  local tool="$1" filter=(--kernel-name kns=blfft) out="$WORK/sanitizer_$1.txt"
  "$SANITIZER" --help 2>/dev/null | grep -q -- '--kernel-name' || filter=(--filter kns=blfft)
  "$SANITIZER" --tool "$tool" "${filter[@]}" --error-exitcode 9 --print-limit 20 \
    "$BUNDLE/bin/blfft_test_cuda_device" --gtest_filter='CudaDeviceSmall.*' --gtest_brief=1 \
    > "$out" 2>&1
  local rc=$?
  tail -n 40 "$out"
  if grep -q -E 'Device not supported|not supported on this (device|platform)' "$out"; then
    echo "compute-sanitizer does not support this machine (e.g. a gVisor sandbox)" > "$WORK/note"
    return 77
  fi
  echo "$(grep -o -E 'ERROR SUMMARY: [0-9]+ errors?|RACECHECK SUMMARY: [0-9]+ hazards?[^)]*' "$out" | head -n1)" > "$WORK/note"
  return "$rc"
}
export -f sanitize
export SANITIZER
if [ "$RUN_GPU" -eq 1 ] && [ -x "$SANITIZER" ]; then
  step sanitizer_memcheck 70 "$B_END" bash -c 'sanitize memcheck'
  step sanitizer_racecheck 70 "$B_END" bash -c 'sanitize racecheck'
elif [ "$RUN_GPU" -eq 1 ]; then
  record sanitizer failed 0 "compute-sanitizer not found"
else
  skip sanitizer_memcheck "no GPU"
  skip sanitizer_racecheck "no GPU"
fi

# =================================================================================================
# c. quick benchmark against cuDNN (2 minutes)
# =================================================================================================
C_END=$(( $(now) + 120 ))
if [ "$RUN_GPU" -eq 1 ]; then
  step bench_blfft 70 "$C_END" "$BUNDLE/bin/blfft_gpu_bench" --quick --out "$WORK/blfft.jsonl"
  if [ "$TORCH_VERSION" != "none" ]; then
    step bench_cudnn 60 "$C_END" "$PY" "$BUNDLE/scripts/cudnn_bench.py" --quick --out "$WORK/cudnn.jsonl"
  else
    record bench_cudnn failed 0 "no python3 with torch"
  fi
else
  skip bench_blfft "no GPU"
  skip bench_cudnn "no GPU"
fi

write_report
log "report: $REPORT.json, $REPORT.md; log: $LOG; $(( $(now) - START )) s in all"
[ "$RUN_GPU" -eq 0 ] && log "GPU steps SKIPPED (no GPU): cpp_cuda_device_tests, python_cuda_tests, sanitizer, benchmarks; passed here: everything that needs no GPU"
npass=$(grep -c '"passed"' "$STEPS"); nfail=$(grep -c '"failed"' "$STEPS")
nskip=$(grep -c -E '"(skipped|unsupported)"' "$STEPS")
echo "gpu_check: $npass passed, $nfail failed, $nskip skipped"
if [ "$FAILED" -ne 0 ]; then
  log "FAILED: $(grep '"failed"' "$STEPS" | sed 's/.*"step": "\([^"]*\)".*/\1/' | paste -sd, -)"
  exit 1
fi
log "all steps that ran passed"
exit 0
