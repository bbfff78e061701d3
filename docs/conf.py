"""Sphinx configuration for trio_rsocket's documentation.

Build: ``python -m sphinx -W -n --keep-going -b html docs docs/_build/html``
(CI does: warnings are errors, and nitpicky mode makes every cross reference
that does not resolve a warning).  Nothing is fetched from the network: CI
has no internet, so intersphinx is off and names from trio, the standard
library and trustme render as code, unlinked (see ``nitpick_ignore_regex``).
"""

from __future__ import annotations

import builtins
import os
import re
import sys
import typing
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
# Names in signatures, as written in the source.  ``Buffer`` is imported from
# typing_extensions for type checking only, so autodoc cannot evaluate it: it
# is the backport of PEP 688's collections.abc.Buffer (the same class on
# Python 3.12+), so say that.  ``Deadline`` stays ``Deadline`` (a link to its
# entry in the reference) rather than its expansion ``float | int | None``.
autodoc_type_aliases = {"Buffer": "collections.abc.Buffer", "Deadline": "Deadline"}

# Every cross reference must resolve (-n), but the build is offline: there is
# no inventory of trio's, the standard library's or trustme's objects to link
# to (intersphinx would fetch them, pip packages do not ship them).  Names
# from those projects are theirs to document, so they are let through, by
# module, and render as unlinked code.  Everything of trio_rsocket's own must
# resolve; nothing here matches a trio_rsocket name.
_OTHER_PROJECTS = (
    "trio",
    "trustme",
    "ssl",
    "_ssl",  # ssl.SSLSession says it is _ssl.SSLSession
    "socket",
    "os",
    "pathlib",
    "asyncio",
    "functools",
    "collections.abc",
    "time",
    "ipaddress",
    "multiprocessing",
)
# Attributes of Python's built-in classes (``OSError.errno``): Sphinx knows
# the classes themselves, not their attributes.
_BUILTIN_CLASSES = sorted(name for name, value in vars(builtins).items() if isinstance(value, type))
nitpick_ignore_regex = [
    (r"py:.*", "({})(\\..+)?".format("|".join(re.escape(module) for module in _OTHER_PROJECTS))),
    (r"py:(attr|meth)", "({})\\.\\w+".format("|".join(_BUILTIN_CLASSES))),
    # A NamedTuple's field types (InheritedSocket.family) show as autodoc
    # finds them on the generated class: socket.AddressFamily, unqualified.
    (r"py:class", r"AddressFamily"),
]
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
    """Warn (an error under -W) about a public name of trio_rsocket or
    trio_rsocket.testing that reference.rst does not document, so the
    reference cannot fall behind."""
    from sphinx.util import logging

    import trio_rsocket.testing

    text = (Path(app.srcdir) / "reference.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto\w+:: ([\w.]+)", text, flags=re.MULTILINE))
    for module in (trio_rsocket, trio_rsocket.testing):
        public = {name for name in vars(module) if not name.startswith("_")}
        public |= {name for name in module.__all__ if not name.startswith("__")}
        modules = {name for name in public if type(getattr(module, name)).__name__ == "module"}
        if module is trio_rsocket.testing:
            # What testing imports for its own use is not its API.
            public &= set(module.__all__)
        for name in sorted(public - modules):
            if f"{module.__name__}.{name}" not in documented:
                logging.getLogger(__name__).warning(
                    "%s.%s is public but not in docs/reference.rst: add an auto directive for it",
                    module.__name__,
                    name,
                )


# The type variables of trio_rsocket's signatures (``T``, ``ArgsT``): a
# generic signature names them, but they are placeholders, not objects with
# a page of their own, so they render as unlinked code.  Only a name that
# really is a type variable in one of trio_rsocket's modules is let through.
_TYPE_VARIABLE_KINDS = (typing.TypeVar, typing.ParamSpec, typing.TypeVarTuple)


def _is_type_variable(target: str) -> bool:
    module_name, _, name = target.rpartition(".")
    if module_name:
        candidates = [sys.modules.get(module_name)]
    else:
        candidates = [module for key, module in sys.modules.items() if key.partition(".")[0] == "trio_rsocket"]
    return any(
        module is not None
        and module.__name__.partition(".")[0] == "trio_rsocket"
        and isinstance(getattr(module, name, None), _TYPE_VARIABLE_KINDS)
        for module in candidates
    )


def _type_variable_as_code(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") == "py" and _is_type_variable(node.get("reftarget", "")):
        return contnode
    return None


def setup(app: Any) -> None:
    app.connect("builder-inited", _check_reference_is_complete)
    app.connect("missing-reference", _type_variable_as_code)
