#!/usr/bin/env bash
# Run a command while another process keeps one core busy (Debian's stress-ng), to check that
# nothing depends on machine load: a test that passes only on an idle machine fails here.
#
#   scripts/under-load.sh make test
#   UNDER_LOAD_CPUS=2 scripts/under-load.sh .venv/bin/python -m pytest tests/test_em.py
#
# UNDER_LOAD_CPUS (default 1) is how many cores stress-ng keeps busy. The command's exit status
# is this script's; stress-ng is stopped however the command ends.
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
command -v stress-ng >/dev/null 2>&1 \
    || { echo "error: stress-ng is not installed (make setup, or apt-get install stress-ng)" >&2
         exit 2; }

stress-ng --cpu "${UNDER_LOAD_CPUS:-1}" --cpu-load 100 --quiet &
STRESS_PID=$!
trap 'kill "$STRESS_PID" 2>/dev/null || true; wait "$STRESS_PID" 2>/dev/null || true' EXIT
echo "under-load: stress-ng (pid $STRESS_PID) keeps ${UNDER_LOAD_CPUS:-1} core(s) busy" >&2

status=0
"$@" || status=$?
exit "$status"
