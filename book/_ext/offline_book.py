"""Keep the built book free of console errors and of requests to other hosts.

It also checks, when the build starts, that the vendored MathJax is in place.

Jupyter Book 1 always loads the sphinx-thebe extension. Even with ``launch_buttons.thebe:
false`` it adds to every page an inline ``const THEBE_JS_URL = "https://unpkg.com/..."`` (twice,
which is a SyntaxError in the browser: "Identifier 'THEBE_JS_URL' has already been declared")
and ``_static/sphinx-thebe.js``. The book has no live code cells, so drop both from every page.

It also repairs the roles of the bibliography's markup (the references page): docutils writes
``<div role="list" class="citation-list">`` around ``<div class="citation"
role="doc-biblioentry">``, a role ARIA 1.2 deprecates, which leaves the list with no list items
(axe-core: aria-required-children, aria-deprecated-role, aria-allowed-role). Each entry becomes
a ``listitem``.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)


def _is_thebe(script) -> bool:
    filename = getattr(script, "filename", None) or str(script)
    body = (getattr(script, "attributes", None) or {}).get("body", "") or ""
    return "sphinx-thebe" in filename or "THEBE_JS_URL" in body


def _drop_thebe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [s for s in scripts if not _is_thebe(s)]


def _fix_bibliography_roles(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def _check_mathjax(app):
    """Warn (an error under -W) when the vendored MathJax that mathjax_path points at is missing."""
    if app.builder.format != "html" or "://" in app.config.mathjax_path:
        return
    # mathjax_path is relative to _static/ (Sphinx prefixes it), e.g. "../mathjax/x.js".
    served = (Path(app.outdir) / "_static" / app.config.mathjax_path).resolve()
    relative = served.relative_to(Path(app.outdir).resolve())
    for extra in app.config.html_extra_path:
        if (Path(app.confdir) / extra / relative).is_file():
            return
    LOGGER.warning(
        "MathJax is not vendored (%s not found in html_extra_path): run `make setup` or "
        "`bash scripts/vendor-mathjax.sh`, or the book's maths will not render offline",
        relative,
    )


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    app.connect("html-page-context", _fix_bibliography_roles)
    app.connect("builder-inited", _check_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
