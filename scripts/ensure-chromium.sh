#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (/usr/bin/chromium). Installs it when missing;
# apt-get needs root, so elsewhere this says what to run and fails.
set -euo pipefail
CHROMIUM=${LOOKOUT_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Chromium for the browser tests (apt-get)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
  exit 0
fi
echo "The browser tests need Chromium at $CHROMIUM:" >&2
echo "  sudo apt-get install chromium   (or set LOOKOUT_CHROMIUM to its path)" >&2
exit 1
