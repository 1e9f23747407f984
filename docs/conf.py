"""Sphinx configuration of relaxcat's documentation: ``nox -s docs`` builds it.

The pages are Markdown (MyST); the API reference comes from the numpydoc docstrings. The
build runs with warnings as errors (``-W``), so a broken link, an unknown reference, a
malformed docstring or a public function missing from ``api.md`` fails it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import relaxcat  # noqa: E402

project = "relaxcat"
author = "relaxcat developers"
copyright = "relaxcat developers"
release = version = relaxcat.__version__
REPO = "https://github.com/relaxcat/relaxcat"

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "scripts", "data", "README.md"]
nitpicky = True

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_typehints = "none"  # the numpydoc "Parameters" sections state the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
# Every documented function documents each parameter (and no other), returns and an example.
numpydoc_validation_checks = {"PR01", "PR02", "PR10", "RT01", "EX01", "GL08"}

html_theme = "pydata_sphinx_theme"
html_title = f"relaxcat {version}"
html_static_path: list[str] = []
html_theme_options = {
    "github_url": REPO,
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
# The section navigation only where there is a section (the guide); wider pages elsewhere.
_TOP_PAGES = (
    "index",
    "api",
    "estimators",
    "distributions",
    "vae",
    "comparison",
    "benchmarks",
    "contributing",
)
html_sidebars: dict[str, list[str]] = {page: [] for page in (*_TOP_PAGES, "scaling")}

# -- pages that other branches bring --------------------------------------------------
#: Pages that may not exist yet. A toctree line naming an absent one, and a line that
#: ends with ``<!-- needs: NAME -->`` for an absent ``NAME.md``, are left out (the marker
#: itself is dropped once the page exists), so the
#: strict build passes before those pages land and includes them once they do.
OPTIONAL_PAGES = ("benchmarks", "scaling")


def _drop_absent_pages(app: Any, docname: str, source: list[str]) -> None:
    text = source[0]
    for name in OPTIONAL_PAGES:
        marker = rf"[ \t]*<!-- needs: {re.escape(name)} -->"
        if (DOCS / f"{name}.md").exists():
            text = re.sub(marker, "", text)
        else:
            text = re.sub(rf"(?m)^{re.escape(name)}\n", "", text)
            text = re.sub(rf"(?m)^.*{marker}[ \t]*\n", "", text)
    source[0] = text


# -- the API reference covers every public name ----------------------------------------


def _check_api_coverage(app: Any) -> None:
    from sphinx.util import logging

    api = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"auto(?:function|class):: relaxcat\.(\w+)", api))
    public = {name for name in relaxcat.__all__ if not name.startswith("__")}
    logger = logging.getLogger("relaxcat.docs")
    for name in sorted(public - documented):
        logger.warning("relaxcat.%s is public but not in docs/api.md", name, location="api")
    for name in sorted(documented - public):
        logger.warning("docs/api.md documents relaxcat.%s, which is not public", name)


def setup(app: Any) -> None:
    app.connect("source-read", _drop_absent_pages)
    app.connect("builder-inited", _check_api_coverage)
