# Sourced first by the tools/*.sh scripts: strict mode, ROOT (the repository) as the working
# directory, log, which prints a line prefixed with the script's name, and find_python312.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '\n== %s: %s\n' "$(basename "$0" .sh)" "$*"; }

# find_python312 [CANDIDATE...]: prints the first CPython 3.12 among $BLFFT_PYTHON312, python3.12
# on PATH, the candidates and pyenv's 3.12 versions; prints nothing when there is none.
find_python312() {
  local c
  for c in "${BLFFT_PYTHON312:-}" "$(command -v python3.12 || true)" "$@" \
           "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
        2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 0
}
