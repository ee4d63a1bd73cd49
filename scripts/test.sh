#!/usr/bin/env bash
# The test command (README, .ci/run): bootstrap, type-check, lint and format check, then the
# suite with wrapt's C extension, then the library's own tests again in wrapt's pure-Python
# mode, then the library's tests at the declared minimum versions (lowest Python, lowest wrapt,
# in a fresh venv), then the documentation site in strict mode. Every step runs even when an
# earlier one failed, and the last line is one verdict naming the steps that failed.
#   scripts/test.sh            the CI suite
#   scripts/test.sh --soak     also the long, marked runs (about 15 minutes more)
#   scripts/test.sh [--soak] PYTEST_ARGS...   extra arguments for the main pytest step
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

marker="not soak"
if [ "${1:-}" = "--soak" ]; then marker=""; shift; fi

passed=()
failed=()
verdict() {
    local took="$((SECONDS / 60)) min $((SECONDS % 60)) s"
    local total=$((${#passed[@]} + ${#failed[@]}))
    if [ ${#failed[@]} -eq 0 ] && [ "$total" -gt 0 ]; then
        echo "test.sh: PASS: all $total steps passed in $took"
    else
        local names
        names=$(printf '%s, ' "${failed[@]}")
        echo "test.sh: FAIL: ${#failed[@]} of $total steps failed in $took: ${names%, }${1:+ ($1)}"
    fi
}
trap 'echo; verdict "interrupted"; exit 130' INT TERM

# step NAME COMMAND...: run one step, remember how it ended.
step() {
    local name=$1
    shift
    echo "== $name"
    if "$@"; then
        passed+=("$name")
    else
        failed+=("$name (exit $?)")
    fi
}

step "bootstrap (scripts/bootstrap.sh)" bash scripts/bootstrap.sh
if [ ${#failed[@]} -gt 0 ]; then
    verdict "nothing else can run without it"
    exit 1
fi
step "mypy --strict safeclients tests/typing" $PY -m mypy safeclients tests/typing
step "mypy --strict server" $PY -m mypy --strict server
step "ruff check" $PY -m ruff check .
step "ruff format --check" $PY -m ruff format --check .
step "pytest (wrapt C extension)" $PY -m pytest -m "$marker" "$@"
step "pytest tests/lib and the detector (WRAPT_DISABLE_EXTENSIONS=1, pure-Python proxies)" \
    env WRAPT_DISABLE_EXTENSIONS=1 $PY -m pytest tests/lib tests/prove/test_detector.py -m "$marker"
step "minimum versions (scripts/min_versions.sh)" bash scripts/min_versions.sh
step "docs (scripts/docs.sh: mkdocs build --strict)" bash scripts/docs.sh

verdict
[ ${#failed[@]} -eq 0 ]
