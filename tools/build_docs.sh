#!/usr/bin/env bash
# Builds the API reference into docs/_build/html with warnings as errors (issue #13):
#   1. doxygen (docs/Doxyfile) on the C++ headers include/blfft/*.hpp
#      -> docs/_build/doxygen-out/cpp,
#      warnings as errors; skipped with a note when doxygen is not installed (Debian: doxygen);
#   2. Sphinx (docs/conf.py: autodoc from the installed package's docstrings of blfft,
#      blfft.functional, blfft.nn; myst-parser for docs/design.md) with -W; the Doxygen pages
#      are copied into the site (docs/_build/html/cpp/).
#
#   bash tools/build_docs.sh
#
# Environment: PYTHON (default .venv/bin/python: needs sphinx, myst-parser and blfft installed;
# tools/setup.sh installs them).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY="${PYTHON:-$ROOT/.venv/bin/python}"

rm -rf docs/_build/doxygen-out docs/_build/html
if command -v doxygen >/dev/null 2>&1; then
  echo "== docs: doxygen $(doxygen --version) on include/blfft"
  mkdir -p docs/_build/doxygen-out
  doxygen docs/Doxyfile
else
  echo "== docs: doxygen not installed: the C++ reference is not generated" \
    "(apt-get install doxygen)"
fi
echo "== docs: sphinx-build -W"
# Run from outside the source tree, so that `import blfft` is the installed package.
(cd /tmp && "$PY" -m sphinx -W --keep-going -q -b html "$ROOT/docs" "$ROOT/docs/_build/html")
echo "== docs: built $ROOT/docs/_build/html/index.html"
