#!/usr/bin/env bash
# Headless Chromium for tests/test_review.py (the review page opened in a browser): Debian's
# `chromium`, installed when missing and we are root with apt-get. Idempotent, and it never
# fails the run itself: without a browser those tests skip and say why, or fail under CI's
# VITALEDGE_REQUIRE_ALL=1 (.ci/run).
set -u
if command -v chromium >/dev/null 2>&1; then
    echo "browser: $(command -v chromium) is installed"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: chromium missing and not installable here (needs root and apt-get);" \
         "the browser test will skip"
    exit 0
fi
echo "browser: installing Debian's chromium" \
     "(apt-get update && apt-get install -y --no-install-recommends chromium)"
log=$(mktemp)
if { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends chromium; } >"$log" 2>&1; then
    echo "browser: installed $(command -v chromium)"
else
    tail -n 5 "$log"
    echo "browser: installing chromium failed; the browser test will skip"
fi
rm -f "$log"
exit 0
