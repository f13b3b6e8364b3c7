"""Sphinx configuration of the libspn-keras documentation.

Build it with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``tests/test_docs.py`` does the
same into a temporary folder). Notebooks are rendered as they are stored, without executing them.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the package, also when it is not installed

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import libspn_keras  # noqa: E402

project = "libspn-keras"
author = "libspn-keras developers"
copyright = "libspn-keras developers, MIT license"
release = libspn_keras.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",  # Markdown pages (it includes myst-parser) and the example notebooks
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# Markdown (MyST) and notebooks.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # notebooks are executed by tests/test_notebooks.py, not by the docs build

# API reference: Google-style docstrings, objects documented where the package exports them.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: NamedTuple fields are documented once, by autodoc
napoleon_custom_sections = ["Input shape", "Output shape"]  # free text under a heading, as in Keras
python_use_unqualified_type_names = True

try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # pragma: no cover - the theme is in the test extra; fall back to Sphinx's default
    html_theme = "alabaster"
html_title = f"libspn-keras {release}"
html_static_path: list[str] = []


def _constructor_signature(app, what, name, obj, options, signature, return_annotation):
    """Show a Keras class's ``__init__`` arguments: ``keras.layers.Layer.__new__(*args, **kwargs)`` hides them."""
    if what != "class" or signature != "(*args, **kwargs)":
        return None
    try:
        init = inspect.signature(obj.__init__)
    except (TypeError, ValueError):  # pragma: no cover - a builtin or C constructor
        return None
    parameters = [p.replace(annotation=inspect.Parameter.empty) for p in list(init.parameters.values())[1:]]
    return str(init.replace(parameters=parameters, return_annotation=inspect.Signature.empty)), return_annotation


#: A Markdown link to a relative path (not an image, a URL or an anchor of the same page).
RELATIVE_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?![a-zA-Z][a-zA-Z0-9+.-]*:|#)[^)\s]+\)")


def _unlink_repository_files(app, relative_path, parent_docname, content):
    """Keep only the text of relative links in files included from outside ``docs/`` (``benchmarks/README.md``).

    Their targets (scripts, other READMEs) are not pages of this site, so MyST could not resolve them.
    """
    if not (Path(app.srcdir) / relative_path).resolve().is_relative_to(DOCS):
        content[0] = RELATIVE_LINK.sub(r"\1", content[0])


def setup(app):
    app.connect("autodoc-process-signature", _constructor_signature)
    app.connect("include-read", _unlink_repository_files)
