# Sourced first by the tools/*.sh scripts: strict mode, ROOT (the repository) as the working
# directory, and log, which prints a line prefixed with the script's name.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '\n== %s: %s\n' "$(basename "$0" .sh)" "$*"; }
