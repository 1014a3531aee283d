#!/usr/bin/env bash
# Checks that the project's C++ sources are formatted as .clang-format says (clang-format 19,
# installed into .venv by tools/setup.sh), so that formatting is never a review topic.
# tools/run_tests.sh runs it first.
#
#   bash tools/check_format.sh          # list the files that differ; exit 1 if any
#   bash tools/check_format.sh --fix    # reformat them in place
#
# Files: the C++ sources and headers under include/ src/ cuda/ python/src/ tests/cpp/ bench/
# examples/ tests/cmake_consume/ that git tracks or would add (untracked, not ignored).
# Environment: CLANG_FORMAT (default .venv/bin/clang-format, else clang-format-19 on PATH).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  *) echo "usage: bash tools/check_format.sh [--fix]" >&2; exit 2 ;;
esac

CF="${CLANG_FORMAT:-}"
if [ -z "$CF" ]; then
  for c in .venv/bin/clang-format clang-format-19; do
    if command -v "$c" >/dev/null 2>&1; then CF="$c"; break; fi
  done
fi
# Another major version formats differently: refuse it instead of reporting noise.
if [ -z "$CF" ] || ! "$CF" --version 2>/dev/null | grep -q "version 19\."; then
  echo "check_format: clang-format 19 not found (run: bash tools/setup.sh, which installs it" \
    "into .venv; or set CLANG_FORMAT)" >&2
  exit 1
fi

mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
  'include/*.hpp' 'src/*.hpp' 'src/*.cpp' 'cuda/*.hpp' 'cuda/*.cpp' 'cuda/*.cu' 'cuda/*.cuh' \
  'python/src/*.hpp' 'python/src/*.cpp' 'tests/cpp/*.hpp' 'tests/cpp/*.cpp' 'bench/*.cpp' \
  'examples/*.cpp' 'tests/cmake_consume/*.cpp' | sort -u)
existing=()
for f in "${files[@]}"; do [ -f "$f" ] && existing+=("$f"); done

if [ "$fix" = 1 ]; then
  "$CF" -i "${existing[@]}"
  echo "check_format: formatted ${#existing[@]} files"
  exit 0
fi

bad=()
for f in "${existing[@]}"; do
  "$CF" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ "${#bad[@]}" -gt 0 ]; then
  echo "check_format: ${#bad[@]} of ${#existing[@]} C++ files are not formatted as" \
    ".clang-format says:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "fix with: bash tools/check_format.sh --fix" \
    "(one file's changes: $CF --dry-run FILE)" >&2
  exit 1
fi
echo "check_format: ${#existing[@]} C++ files formatted"
