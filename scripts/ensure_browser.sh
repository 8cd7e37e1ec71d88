#!/bin/sh
# The UI tests drive Debian's chromium through Playwright (never Playwright's own download).
# Install it when it is missing and this machine allows it (root with apt-get). Whatever
# happens here, exit 0: conftest.py decides what a missing browser means (a loud skip of the
# browser tests on a developer's machine, a failure under CI=true).
BROWSER=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ -f "$BROWSER" ] && [ -x "$BROWSER" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests (apt-get install chromium)..."
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
    echo "apt-get could not install chromium."
  fi
fi
exit 0
