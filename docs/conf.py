"""Sphinx configuration of fastscore's documentation.

Build (warnings are errors) from the repository root, with the extension
built in place (``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The package built in place in this checkout, not another installed copy.
sys.path.insert(0, str(HERE.parent))

import fastscore  # noqa: E402

project = "fastscore"
copyright = "fastscore developers"
release = version = fastscore.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path = ["_templates"]


# fastscore.torch's reference without PyTorch installed (its extra is not part
# of the docs extra: PyPI's torch is a multi-GB CUDA build): autodoc imports
# the module against a stand-in; the docstrings are the module's own.
try:
    import torch  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["torch"]

# API reference: one generated page per public object (docs/api/generated,
# not committed), the docstrings parsed by numpydoc; the classes' methods are
# listed by autodoc (docs/_templates/members.rst), not numpydoc's tables.
autosummary_generate = True
numpydoc_show_class_members = False

html_theme = "pydata_sphinx_theme"
html_title = f"fastscore {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
