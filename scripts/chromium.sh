#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (tests marked `browser`) where it is missing. Idempotent
# and quiet; if it cannot be installed, those tests skip and say why.
set -uo pipefail
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  (apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null 2>&1 \
    || echo "chromium: could not install Debian's chromium; browser tests will be skipped"
fi
exit 0
