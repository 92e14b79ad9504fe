#!/usr/bin/env bash
# The README's test command (`make test`) and CI's: makes sure the services the suite talks to answer, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
DEBIAN_FRONTEND=noninteractive bash scripts/chromium.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is not a failure of the code under test.
if [ "$rc" -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi
exit "$rc"
