#!/usr/bin/env bash
# The test command (README, .ci/run): bootstrap, type-check, lint and format check, then the
# suite with wrapt's C extension, then the library's own tests again in wrapt's pure-Python
# mode, then the library's tests at the declared minimum versions (lowest Python, lowest wrapt,
# in a fresh venv), then the documentation site in strict mode.
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
echo "== mypy --strict server"
$PY -m mypy --strict server
echo "== ruff check (pyproject.toml [tool.ruff])"
$PY -m ruff check .
echo "== ruff format --check"
$PY -m ruff format --check .
echo "== pytest (wrapt C extension)"
$PY -m pytest -m "$marker" "$@"
echo "== pytest tests/lib (WRAPT_DISABLE_EXTENSIONS=1, pure-Python proxies)"
WRAPT_DISABLE_EXTENSIONS=1 $PY -m pytest tests/lib -m "$marker"
echo "== minimum versions (scripts/min_versions.sh)"
bash scripts/min_versions.sh
echo "== docs (scripts/docs.sh: mkdocs build --strict)"
bash scripts/docs.sh
