#!/usr/bin/env bash
# bubblewrap (Debian) for the grading sandbox: `make instructor` needs it and nothing else outside
# Python (no node, npm or Chromium). gmm-grade checks the sandbox works before grading and
# refuses otherwise, unless given --no-sandbox.
set -euo pipefail

if [ -x /usr/bin/bwrap ] || command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
else
    echo "warning: bubblewrap is not installed (sudo apt-get install bubblewrap);" \
        "gmm-grade will refuse to grade without --no-sandbox" >&2
fi
