#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed (for the browser test of the box report).
# Idempotent and quiet when chromium is already there. Installs Debian's `chromium` package with
# apt-get when run as root (or with passwordless sudo), bounded by a timeout; otherwise prints
# why it cannot and exits non-zero, so that the caller can skip with a clear message.
#
# Usage: scripts/ensure_chromium.sh [timeout-seconds]   (default 600)
# Prints the path of the browser on success.
set -euo pipefail

TIMEOUT="${1:-${CIRFLOW_CHROMIUM_INSTALL_TIMEOUT:-600}}"

find_browser() {
    local candidate
    for candidate in "${CHROMIUM:-}" chromium chromium-browser google-chrome google-chrome-stable; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if find_browser; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: chromium is not installed and apt-get is not available; install Chromium and set CHROMIUM=/path/to/chromium" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_chromium: chromium is not installed and installing it needs root (apt-get install chromium)" >&2
        exit 1
    fi
fi

LOG="$(mktemp -t ensure_chromium.XXXXXX.log)"
export DEBIAN_FRONTEND=noninteractive
if ! timeout "$TIMEOUT" $SUDO apt-get update -q >"$LOG" 2>&1 \
    || ! timeout "$TIMEOUT" $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >>"$LOG" 2>&1; then
    echo "ensure_chromium: installing chromium with apt-get failed or timed out after ${TIMEOUT}s; last lines of $LOG:" >&2
    tail -n 5 "$LOG" >&2
    exit 1
fi
rm -f "$LOG"

if find_browser; then
    exit 0
fi
echo "ensure_chromium: apt-get succeeded but no chromium binary is on PATH" >&2
exit 1
