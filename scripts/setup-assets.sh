#!/usr/bin/env bash
# Everything the course needs that is not a Python package: headless Chromium (Debian) for the
# browser tests, and MathJax (npm registry) vendored into the book so it reads offline.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: chromium is not installed (sudo apt-get install chromium); browser tests will fail" >&2
    fi
fi

if [ -x scripts/vendor-mathjax.sh ]; then
    bash scripts/vendor-mathjax.sh
fi
