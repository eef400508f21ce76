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
