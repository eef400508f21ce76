#!/usr/bin/env bash
# Vendor MathJax 3 (npm registry) into the book so the built pages render maths with no network.
# Copies es5/tex-mml-chtml.js and the CHTML woff-v2 fonts into book/_extra/mathjax/, which the
# book serves through html_extra_path (NOT _static/: Jupyter Book would add every .js there to
# every page and load MathJax twice). Idempotent: does nothing when the files are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${MATHJAX_VERSION:-3.2.2}"
DEST=book/_extra/mathjax
STAMP="$DEST/.version"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VERSION" ] \
    && [ -s "$DEST/tex-mml-chtml.js" ] && [ -d "$DEST/output/chtml/fonts/woff-v2" ]; then
    exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "error: npm is needed to vendor MathJax" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "mathjax@$VERSION" >/dev/null)
tar -xzf "$TMP"/mathjax-"$VERSION".tgz -C "$TMP"

rm -rf "$DEST"
mkdir -p "$DEST/output/chtml/fonts"
cp "$TMP/package/es5/tex-mml-chtml.js" "$DEST/"
cp -r "$TMP/package/es5/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp "$TMP/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$STAMP"
echo "vendored MathJax $VERSION into $DEST"
