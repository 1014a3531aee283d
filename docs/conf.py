"""Sphinx configuration of blfft's API reference (built by tools/build_docs.sh with -W)."""

import os
import sys

project = "blfft"
author = "the blfft authors"
copyright = "2026, the blfft authors"

try:  # the installed package (tools/setup.sh, or pip install .): its docstrings are the reference
    import blfft

    release = version = blfft.__version__
except ImportError as e:  # pragma: no cover
    sys.exit(f"docs: `import blfft` failed ({e}); install the package first (tools/setup.sh)")

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"
# The class docstring and the constructor's (whose signature lists every argument).
autoclass_content = "both"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
# No network in CI: intersphinx only from a local inventory if one is given.
intersphinx_mapping = {}
if os.environ.get("BLFFT_TORCH_INV"):
    intersphinx_mapping["torch"] = (
        "https://pytorch.org/docs/stable/",
        os.environ["BLFFT_TORCH_INV"],
    )
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]
html_theme = "alabaster"
html_title = f"blfft {release}"
# The Doxygen HTML of the C++ headers (tools/build_docs.sh runs doxygen first) is copied in as is.
# (docs/_build/doxygen-out/cpp/ -> <html>/cpp/).
html_extra_path = []
if os.path.isdir(os.path.join(os.path.dirname(__file__), "_build", "doxygen-out", "cpp")):
    html_extra_path.append(os.path.join("_build", "doxygen-out"))
