#!/usr/bin/env bash
# Everything the course needs that is not a Python package: headless Chromium (Debian) for the
# browser tests, bubblewrap (Debian) for the grading sandbox, and MathJax (npm registry)
# vendored into the book so it reads offline.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: chromium is not installed (sudo apt-get install chromium); browser tests will fail" >&2
    fi
fi

# bubblewrap: every piece of student code that grading runs is sandboxed with it (gmm-grade
# checks it works before grading and refuses otherwise, unless given --no-sandbox).
if ! [ -x /usr/bin/bwrap ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "warning: bubblewrap is not installed (sudo apt-get install bubblewrap); gmm-grade will refuse to grade" >&2
    fi
fi

if [ -x scripts/vendor-mathjax.sh ]; then
    bash scripts/vendor-mathjax.sh
fi

# Development tools from the npm registry (package.json, pinned by package-lock.json): eslint for
# `make lint`, axe-core for the browser tests. npm ci only when node_modules is older than the lock.
command -v npm >/dev/null 2>&1 || { echo "error: npm is needed (Node 20.19+ and npm)" >&2; exit 1; }
if [ ! -f node_modules/.package-lock.json ] \
    || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

# stress-ng (Debian) keeps one core busy for scripts/under-load.sh, the suite's under-load check.
if ! command -v stress-ng >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null
    else
        echo "warning: stress-ng is not installed (sudo apt-get install stress-ng);" \
            "scripts/under-load.sh needs it" >&2
    fi
fi
