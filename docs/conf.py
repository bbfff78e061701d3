"""Sphinx configuration for trio_rsocket's documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (CI does, with
warnings as errors).  Nothing is fetched from the network: intersphinx is
off, so names from trio and the standard library render as code, unlinked.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

# Build from a checkout without installing it first.
sys.path.insert(0, os.path.abspath(".."))

import trio_rsocket  # noqa: E402

project = "trio_rsocket"
author = "trio_rsocket developers"
copyright = "trio_rsocket developers"  # noqa: A001
version = release = trio_rsocket.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
]

# The docstrings are Google style ("Raises:", "Attributes:").
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Rendered as `name`: code, and a link when Sphinx knows the name.
default_role = "py:obj"
# The Python examples in the pages are Python unless they say otherwise.
highlight_language = "python3"

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {
    "description": "Ioto's RSocket API on trio",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
templates_path: list[str] = []


def _check_reference_is_complete(app: Any) -> None:
    """Warn (an error under -W) about a public name of trio_rsocket that
    reference.rst does not document, so the reference cannot fall behind."""
    from sphinx.util import logging

    text = (Path(app.srcdir) / "reference.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto\w+:: trio_rsocket\.(\w+)", text, flags=re.MULTILINE))
    public = {name for name in vars(trio_rsocket) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(trio_rsocket, name)).__name__ == "module"}
    for name in sorted(public - modules - documented):
        logging.getLogger(__name__).warning(
            "trio_rsocket.%s is public but not in docs/reference.rst: add an auto directive for it", name
        )


def setup(app: Any) -> None:
    app.connect("builder-inited", _check_reference_is_complete)
