#!/usr/bin/env bash
# The test command (README, .ci/run): bootstrap, type-check, then the suite with wrapt's C
# extension, then the library's own tests again in wrapt's pure-Python mode.
#   scripts/test.sh            the CI suite
#   scripts/test.sh --soak     also the long, marked runs (about 15 minutes more)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
PY=.venv/bin/python

marker="not soak"
if [ "${1:-}" = "--soak" ]; then marker=""; shift; fi

echo "== mypy --strict safeclients"
$PY -m mypy safeclients tests/typing
echo "== pytest (wrapt C extension)"
$PY -m pytest -m "$marker" "$@"
echo "== pytest tests/lib (WRAPT_DISABLE_EXTENSIONS=1, pure-Python proxies)"
WRAPT_DISABLE_EXTENSIONS=1 $PY -m pytest tests/lib -m "$marker"
