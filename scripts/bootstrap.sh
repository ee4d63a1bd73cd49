#!/usr/bin/env bash
# Install what a fresh machine lacks: Debian packages (gearmand, memcached, wrk, redis-server)
# and a virtualenv in .venv with the project and its test/bench extras. Idempotent: a second
# run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gearmand >/dev/null 2>&1 || [ -x /usr/sbin/gearmand ] || need_apt+=(gearman-job-server)
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need_apt+=(memcached)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)  # per_loop proofs
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian starts the packaged daemons as services; the project starts its own on free ports.

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $($PY --version)" >&2
    $PY -m venv .venv
fi
stamp=.venv/.safeclients-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing the project and its extras into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
# gearman3 (the package the design card names) imports as `gearman`, like pygearman: it lives
# in a side folder that only the gearman3 shim test (safeclients.contrib.gearman) puts on sys.path.
if [ ! -d .venv/gearman3/gearman ]; then
    echo "bootstrap: installing gearman3 0.2.1 into .venv/gearman3 (for the shim test)" >&2
    .venv/bin/python -m pip install -q --no-deps --target .venv/gearman3 gearman3==0.2.1
fi
