"""Offline maths for the feedback pages: MathJax 3, copied once per run beside the pages.

An instructor may have no node or npm, so grading takes the MathJax 3.2.2 release the book
vendors from PyPI's ``django-static-mathjax`` (no Django needed). `install` copies what a page
loads into ``<feedback>/_mathjax/`` and each page points at it by a relative path
(`script_tags`): a feedback folder moved elsewhere or opened offline still renders, and no page
names a CDN. MathJax typesets only mistune's ``math`` elements (a student's ``\\(`` stays text);
the page's Content-Security-Policy admits this folder and the one inline configuration.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

#: The folder under the feedback root, and the distribution that ships MathJax.
FOLDER = "_mathjax"
DISTRIBUTION = "django-static-mathjax"
SCRIPT = "tex-mml-chtml.js"
#: What a page needs of MathJax's es5 build (paths relative to es5/), as the book copies it,
#: plus the TeX extensions that macros such as \boldsymbol load on demand.
PARTS = (SCRIPT, "output/chtml/fonts/woff-v2", "input/tex/extensions")

CONFIG = (
    "window.MathJax = {"
    "tex: {inlineMath: [['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']]},"
    "options: {ignoreHtmlClass: 'feedback-page', processHtmlClass: 'math'}};"
)
CONFIG_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CONFIG.encode()).digest()).decode()
#: Scripts: this folder's files (file: too, for a page opened from disk) and the inline
#: configuration above, nothing else; MathJax's fonts likewise; it writes its own styles.
POLICY = (
    f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'self' file: '{CONFIG_HASH}'; font-src 'self' file: data:"
)


class MathJaxMissingError(RuntimeError):
    """The MathJax package is not installed where grading runs."""


def source() -> Path:
    """The installed MathJax es5 build (``.../mathjax/static/mathjax/es5``)."""
    spec = importlib.util.find_spec("mathjax")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        es5 = Path(folder) / "static" / "mathjax" / "es5"
        if (es5 / SCRIPT).is_file():
            return es5
    raise MathJaxMissingError(
        f"MathJax for the feedback pages is missing: pip install '{DISTRIBUTION}==3.2.2.1' "
        "(it is in the gmmlib[grade] and [instructor] extras; `make instructor` installs it)"
    )


def install(feedback: Path) -> Path:
    """Copy MathJax into ``<feedback>/_mathjax`` unless this version is already there; return
    that folder. Safe when several processes call it at once (a finished copy is renamed into
    place; the first one wins)."""
    dest = Path(feedback) / FOLDER
    stamp = dest / ".version"
    version = importlib.metadata.version(DISTRIBUTION)
    if stamp.is_file() and stamp.read_text() == version and (dest / SCRIPT).is_file():
        return dest
    es5 = source()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mathjax-", dir=dest.parent))
    try:
        for part in PARTS:
            src, target = es5 / part, staging / part
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, target)
            else:
                shutil.copyfile(src, target)
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
        for licence in [f for f in files if f.name == "LICENSE"][:1]:
            shutil.copyfile(licence.locate(), staging / "LICENSE")
        (staging / ".version").write_text(version)
        staging.chmod(0o755)
        if dest.exists():  # another version, or a copy cut short
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.rename(staging, dest)
        except OSError:  # another process put its copy there first
            if not (dest / SCRIPT).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def script_tags(page: Path, feedback: Path) -> str:
    """The ``<script>`` tags of a page at ``page`` (under ``feedback``): the configuration and
    MathJax itself, by a path relative to the page."""
    src = os.path.relpath(Path(feedback) / FOLDER / SCRIPT, Path(page).parent)
    return f'<script>{CONFIG}</script>\n<script defer src="{Path(src).as_posix()}"></script>'
