"""Re-execute the book when gmmlib (or the exercises it reads) change, not only its own pages.

MyST-NB's execution cache is keyed on each page's code cells, so a change in `gmmlib` would leave
stale outputs (and hide a page the change breaks) until someone clears the cache. This extension
points ``nb_execution_cache_path`` at ``_build/.jupyter_cache/gmmlib-<hash>``, where the hash
covers every file the pages import or read: a change gives a fresh cache and, because the config
value changed, Sphinx re-reads every page. With no change, the cache is reused as usual. Caches
for older hashes are deleted.

It also re-reads (so re-executes) every page whose execution failed in the previous build:
Sphinx would otherwise consider it up to date, and a rebuild with no change would "succeed"
while still showing the traceback.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

#: Globs (relative to the repository root) whose contents the executed pages depend on.
WATCHED = ("gmmlib/**/*.py", "gmmlib/data/*", "exercises/*/*.ipynb")


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for pattern in WATCHED:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _use_hashed_cache(app, config):
    if config.nb_execution_cache_path:  # an explicit `execute.cache` in _config.yml wins
        return
    base = Path(app.outdir).parent / ".jupyter_cache"
    name = f"gmmlib-{source_hash(Path(app.confdir).parent)}"
    if base.is_dir():
        for old in base.glob("gmmlib-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    config.nb_execution_cache_path = str(base / name)


def _failed_pages(app, env, added, changed, removed):
    """Pages whose notebook execution failed last time (MyST-NB records it in the env)."""
    metadata = getattr(env, "nb_metadata", {}) or {}
    return [
        docname
        for docname, data in metadata.items()
        if docname in env.found_docs
        and isinstance(data.get("exec_data"), dict)
        and data["exec_data"].get("succeeded") is False
    ]


def setup(app):
    app.connect("config-inited", _use_hashed_cache, priority=900)
    app.connect("env-get-outdated", _failed_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
