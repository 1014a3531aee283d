#!/usr/bin/env bash
# Installs a wheel of blfft (tools/build_wheel.sh) into a fresh venv and checks that it computes
# where none of Debian's FFTW, BLIS or OpenBLAS libraries (nor its libgomp) can be loaded: the test
# runs in a private mount namespace (`unshare -m`, as root) in which those files are bind-mounted
# over by /dev/null and their folders by empty ones. It then compares blfft's forward and both
# backward passes at compression rate 0 with torch's conv1d/conv2d. Where the wheel holds
# blfft._cuda it also checks that the module reports why it cannot load without the nvidia-cufft
# and nvidia-cublas wheels, and that it loads (device_count() 0 without a GPU) once both are
# installed.
#
#   bash tools/test_wheel.sh [WHEEL]        (default: the newest dist/blfft-*.whl)
#
# Environment: PYTHON (interpreter of the venv; default python3, must match the wheel's tag),
# TORCH_SPEC (default torch==2.13.0, the CPU build on this machine's disk), BLFFT_WHEEL_TEST_DIR
# (default /tmp/blfft-wheel-test: venv and work folder, made anew at each run),
# BLFFT_WHEEL_TEST_CUFFT (default 1 when the wheel holds blfft._cuda: install nvidia-cufft and
# nvidia-cublas and import blfft._cuda; 0 skips that).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TEST_DIR="${BLFFT_WHEEL_TEST_DIR:-/tmp/blfft-wheel-test}"
log() { printf '\n== test_wheel: %s\n' "$*"; }
die() { echo "test_wheel: $*" >&2; exit 1; }

WHEEL="${1:-$(ls -t "$ROOT"/dist/blfft-*.whl 2>/dev/null | head -n1 || true)}"
[ -n "$WHEEL" ] && [ -f "$WHEEL" ] || die "no wheel (run: bash tools/build_wheel.sh)"
WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
case "$(basename "$WHEEL")" in
  *manylinux*) ;;
  *) die "$WHEEL is not a repaired manylinux wheel" ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root (unshare -m and bind mounts)"
command -v unshare >/dev/null || die "unshare (util-linux) not found"

log "fresh venv in $TEST_DIR/venv ($TORCH_SPEC, then $(basename "$WHEEL"))"
rm -rf "$TEST_DIR"
mkdir -p "$TEST_DIR/empty" "$TEST_DIR/run"
"$PYTHON" -m venv "$TEST_DIR/venv"
VPY="$TEST_DIR/venv/bin/python"
# torch first: a plain `torch` requirement would otherwise pull a CUDA build of several GB.
"$VPY" -m pip install --quiet "$TORCH_SPEC" 2>&1 | grep -v '^WARNING: Location' || true
"$VPY" -c 'import torch' 2>/dev/null || die "torch did not install ($TORCH_SPEC)"
"$VPY" -m pip install --quiet "$WHEEL" 2>&1 | grep -v '^WARNING: Location' || true
"$VPY" -m pip show blfft >/dev/null || die "the wheel did not install"

HAS_CUDA=0
if unzip -l "$WHEEL" | grep -q 'blfft/_cuda\.'; then HAS_CUDA=1; fi

# What the namespace hides: every FFTW / BLIS / OpenBLAS (scipy's too) / BLAS / LAPACK library and
# libgomp of the system's library folders (files: /dev/null over them; their own folders: an empty
# folder).
HIDE_FILES=()
HIDE_DIRS=()
for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib /usr/local/lib; do
  [ -d "$d" ] || continue
  for f in "$d"/libfftw3*.so* "$d"/libblis*.so* "$d"/libopenblas*.so* "$d"/libblas*.so* \
           "$d"/liblapack*.so* "$d"/libgomp*.so* "$d"/libscipy_openblas*.so*; do
    # Shared libraries only; a symbolic link is covered by covering the file it points to.
    [ -e "$f" ] && HIDE_FILES+=("$(realpath "$f")")
  done
  for sub in "$d"/blis-* "$d"/openblas-* "$d"/blas "$d"/lapack; do
    [ -d "$sub" ] && [ ! -L "$sub" ] && HIDE_DIRS+=("$(realpath "$sub")")
  done
done
mapfile -t HIDE_FILES < <(printf '%s\n' "${HIDE_FILES[@]}" | sort -u | grep -v '^$' || true)
mapfile -t HIDE_DIRS < <(printf '%s\n' "${HIDE_DIRS[@]}" | sort -u | grep -v '^$' || true)

cat > "$TEST_DIR/run/check.py" <<'PY'
import ctypes, ctypes.util, os, sys, warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

# 1. The system's libraries really are out of reach here.
for name in ("fftw3f", "fftw3", "blis", "gomp"):
    path = ctypes.util.find_library(name)
    for candidate in filter(None, [path, f"lib{name}.so.3", f"lib{name}.so.4", f"lib{name}.so.1"]):
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        sys.exit(f"FAIL: {candidate} still loads: the system's libraries are not hidden")
print("ok: the system's FFTW, BLIS and libgomp cannot be loaded")

import torch
import blfft
import blfft.functional as F

venv = os.environ["BLFFT_TEST_VENV"]
assert blfft.__file__.startswith(venv), blfft.__file__
print("ok: blfft", blfft.__version__, "from", os.path.dirname(blfft.__file__))
with open("/proc/self/maps") as f:
    maps = f.read()
grafted = sorted({l.split()[-1].rsplit("/", 1)[-1] for l in maps.splitlines()
                  if "blfft.libs/" in l})
print("ok: loaded from the wheel's blfft.libs:", ", ".join(grafted))
assert any("fftw3f" in g for g in grafted), grafted
# The BLAS: scipy-openblas32 from this venv (a dependency of the wheel), or a grafted BLIS.
sob = sorted({l.split()[-1] for l in maps.splitlines() if "libscipy_openblas" in l})
if sob:
    assert all(l.startswith(venv) for l in sob), sob
    print("ok: the BLAS is the venv's scipy-openblas32:", sob[0])
else:
    assert any("blis" in g for g in grafted), grafted
info = blfft.build_info()
print("ok: build_info blas:", info["blas"], "core:", info["blas_core"])
assert (info["blas_core"] is not None) == bool(sob), info

torch.manual_seed(0)
worst = 0.0
for dim in (1, 2):
    for dtype in (torch.float32, torch.float64):
        size = (3, 4, 21) if dim == 1 else (3, 4, 13, 11)
        x = torch.randn(*size, dtype=dtype, requires_grad=True)
        w = torch.randn(5, 4, *([3] * dim), dtype=dtype, requires_grad=True)
        b = torch.randn(5, dtype=dtype, requires_grad=True)
        ref_conv = torch.nn.functional.conv1d if dim == 1 else torch.nn.functional.conv2d
        conv = F.conv1d if dim == 1 else F.conv2d
        y = conv(x, w, b, padding=1, compress_rate=0.0)
        y_ref = ref_conv(x, w, b, padding=1)
        g = torch.randn_like(y_ref)
        grads = torch.autograd.grad(y, (x, w, b), g)
        grads_ref = torch.autograd.grad(y_ref, (x, w, b), g)
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        for name, a, r in zip(("y", "dx", "dw", "db"), (y, *grads), (y_ref, *grads_ref)):
            err = float((a - r).detach().abs().max() / r.detach().abs().max())
            worst = max(worst, err if dtype == torch.float64 else 0.0)
            assert err < tol, f"conv{dim}d {dtype} {name}: relative error {err:.2e} >= {tol}"
        print(f"ok: conv{dim}d {str(dtype):13s} forward + backward match torch")
# Compressed: still runs and gives a finite result of the right shape.
m = blfft.nn.Conv2d(4, 6, 3, padding=1, compress_rate=0.5)
out = m(torch.randn(2, 4, 16, 16))
out.sum().backward()
assert out.shape == (2, 6, 16, 16) and torch.isfinite(out).all()
print("ok: blfft.nn.Conv2d at rate 0.5, forward + backward")

info = blfft.build_info()
keys = ("version", "cuda_built", "cuda_build", "cuda_import_error", "cuda_device_count", "torch")
print("build_info:", {k: info[k] for k in keys if k in info})
expect = os.environ.get("BLFFT_TEST_EXPECT_CUDA", "")
if expect == "missing-cufft":
    # (the loader names the first of libcufft / libcublas it misses)
    err = str(info["cuda_import_error"])
    assert not info["cuda_built"] and ("libcufft" in err or "libcublas" in err), info
    print("ok: without nvidia-cufft / nvidia-cublas, blfft._cuda does not load and build_info() "
          "says why")
elif expect == "loads":
    assert info["cuda_built"] and info["cuda_import_error"] is None, info
    import blfft._cuda as c
    libs = [l.split()[-1] for l in maps.splitlines()] + [
        l.split()[-1] for l in open("/proc/self/maps").read().splitlines()]
    cufft = sorted({l for l in libs if "libcufft" in l})
    assert cufft and all(os.path.join(venv, "lib") in l for l in cufft), cufft
    cublas = sorted({l for l in libs if "libcublas.so" in l})
    assert cublas and all(os.path.join(venv, "lib") in l for l in cublas), cublas
    print("ok: blfft._cuda loads libcufft and libcublas from the venv's nvidia wheels:", cufft[0],
          cublas[0], "; device_count() =", c.device_count())
print("test_wheel: all checks passed")
PY

run_isolated() {
  # $@: environment assignments for the check
  unshare -m -- env "$@" BLFFT_TEST_VENV="$TEST_DIR/venv" bash -c '
    set -e
    mount --make-rprivate / 2>/dev/null || true
    empty="$1"; shift
    for f in $HIDE_FILES_LIST; do mount --bind /dev/null "$f"; done
    for d in $HIDE_DIRS_LIST; do mount --bind "$empty" "$d"; done
    cd "$(dirname "$0")"
    exec "$BLFFT_TEST_VENV/bin/python" -I check.py
  ' "$TEST_DIR/run/check.py" "$TEST_DIR/empty"
}
export HIDE_DIRS_LIST="${HIDE_DIRS[*]:-}"
export HIDE_FILES_LIST="${HIDE_FILES[*]:-}"
log "hiding ${#HIDE_FILES[@]} library files and ${#HIDE_DIRS[@]} folders (unshare -m)"

if [ "$HAS_CUDA" = 1 ]; then
  log "check 1/2: the CPU backend, blfft._cuda without nvidia-cufft / nvidia-cublas"
  run_isolated BLFFT_TEST_EXPECT_CUDA=missing-cufft
  if [ "${BLFFT_WHEEL_TEST_CUFFT:-1}" = 1 ]; then
    log "check 2/2: with nvidia-cufft and nvidia-cublas (blfft[cuda]'s) installed"
    "$VPY" -m pip install --quiet --no-deps 'nvidia-cufft==12.0.0.61' \
      'nvidia-cublas==13.10.0.20' 2>&1 | grep -v '^WARNING: Location' || true
    run_isolated BLFFT_TEST_EXPECT_CUDA=loads
  fi
else
  log "check: the CPU backend (the wheel has no blfft._cuda)"
  run_isolated
fi
log "passed ($(basename "$WHEEL"))"
