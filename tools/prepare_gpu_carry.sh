#!/usr/bin/env bash
# Prepares, here (Debian bookworm, with network), the C/C++ libraries that tools/gpu_check.sh needs
# on a GPU machine that has no network and may lack them: FFTW3 (float and double), OpenBLAS
# (OpenMP flavour), GoogleTest, pkg-config (pkgconf), and the gfortran runtime that OpenBLAS needs.
# The Debian packages are fetched with `apt-get download` (no installation) and unpacked with
# `dpkg -x` into a git-ignored folder that the GPU run carries along; then trimmed (static
# libraries, documentation, the long/quad FFTW variants) and the pkg-config files made
# relocatable (prefix=${pcfiledir}/../../..).
#
#   bash tools/prepare_gpu_carry.sh [DEST]        (default DEST: third_party_local)
#
# Layout of DEST:
#   root/      unpacked packages that only add files (headers, libraries, cmake and .pc files)
#   fallback/  runtime libraries a system normally has (libgfortran5, libquadmath0): gpu_check.sh
#              puts them on LD_LIBRARY_PATH only when the loader cannot find them
#   debs/      the .deb files (removed at the end to save space)
#   COMMIT     the git commit this was prepared for (the GPU run may have no .git)
# Needs: apt-get, dpkg, network access to the Debian mirror. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEST="${1:-third_party_local}"
case "$DEST" in /*) ;; *) DEST="$ROOT/$DEST" ;; esac
ARCH=x86_64-linux-gnu

# Minimal set (dependencies worked out by hand, see gpu_check.sh for how each is used):
#   libfftw3-dev          fftw3.h, fftw3f.pc / fftw3.pc, the unversioned .so links
#   libfftw3-single3/double3   libfftw3f.so.3, libfftw3.so.3 (need only libc and libm)
#   libopenblas0-openmp   libopenblas.so.0, OpenMP flavour (needs libgfortran5, libgomp1)
#   libgtest-dev          GoogleTest static libraries + GTestConfig.cmake (relocatable)
#   pkgconf-bin, libpkgconf3   pkg-config, for CMake's FindPkgConfig
# libgomp1 is not carried: it comes with the system's g++, and an older copy on LD_LIBRARY_PATH
# would shadow the one that compiler's OpenMP code needs.
PACKAGES=(libfftw3-dev libfftw3-single3 libfftw3-double3 libopenblas0-openmp libgtest-dev
          pkgconf-bin libpkgconf3)
FALLBACK_PACKAGES=(libgfortran5 libquadmath0)

log() { printf '== prepare_gpu_carry: %s\n' "$*"; }

mkdir -p "$DEST/debs" "$DEST/root" "$DEST/fallback"
cd "$DEST/debs"
if ! apt-get download "${PACKAGES[@]}" "${FALLBACK_PACKAGES[@]}" >/dev/null 2>&1; then
  log "apt-get download failed; refreshing the package lists once"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update >/dev/null
  apt-get download "${PACKAGES[@]}" "${FALLBACK_PACKAGES[@]}"
fi
for p in "${PACKAGES[@]}"; do
  deb=$(ls -1 "${p}"_*.deb | head -n1)
  log "unpacking $deb"
  dpkg -x "$deb" "$DEST/root"
done
for p in "${FALLBACK_PACKAGES[@]}"; do
  deb=$(ls -1 "${p}"_*.deb | head -n1)
  log "unpacking $deb (fallback)"
  dpkg -x "$deb" "$DEST/fallback"
done
cd "$DEST"
rm -rf debs

# Trim what the build does not use.
LIB="$DEST/root/usr/lib/$ARCH"
rm -rf "$DEST/root/usr/share/doc" "$DEST/root/usr/share/man" "$DEST/fallback/usr/share" \
       "$DEST/root/usr/src"
rm -f "$LIB"/libfftw3*.a "$LIB"/libfftw3l* "$LIB"/libfftw3q* "$LIB"/libfftw3*_omp* \
      "$LIB"/libfftw3*_threads* "$LIB"/pkgconfig/fftw3l.pc "$LIB"/pkgconfig/fftw3q.pc \
      "$LIB"/openblas-openmp/libblas.so* "$LIB"/openblas-openmp/liblapack.so*
rm -rf "$LIB"/cmake/fftw3 "$DEST/root/usr/bin/fftw"* 2>/dev/null || true

# Relocatable pkg-config files: prefix relative to the file's own folder.
for pc in "$LIB"/pkgconfig/*.pc; do
  sed -i 's|^prefix=/usr$|prefix=${pcfiledir}/../../..|' "$pc"
done

git -C "$ROOT" rev-parse HEAD > "$DEST/COMMIT" 2>/dev/null || echo unknown > "$DEST/COMMIT"

# Sanity checks: the files gpu_check.sh relies on, and the size.
for f in "$DEST/root/usr/include/fftw3.h" "$LIB/pkgconfig/fftw3f.pc" "$LIB/pkgconfig/fftw3.pc" \
         "$LIB/libfftw3f.so.3" "$LIB/libfftw3.so.3" "$LIB/openblas-openmp/libopenblas.so.0" \
         "$LIB/cmake/GTest/GTestConfig.cmake" "$LIB/libgtest.a" "$DEST/root/usr/bin/pkgconf" \
         "$DEST/fallback/usr/lib/$ARCH/libgfortran.so.5"; do
  [ -e "$f" ] || { echo "prepare_gpu_carry: missing $f" >&2; exit 1; }
done
size_kib=$(du -sk "$DEST" | cut -f1)
log "$DEST: $((size_kib / 1024)) MiB"
if [ "$size_kib" -gt $((60 * 1024)) ]; then
  echo "prepare_gpu_carry: $DEST is larger than 60 MiB" >&2
  exit 1
fi
log "done; carry it with the GPU run (device tool: carry [\"third_party_local\"])"
