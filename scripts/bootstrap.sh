#!/usr/bin/env bash
# Install what a fresh machine lacks, say what first, and skip what is already there (a second
# run only checks). Debian packages need root: run as root, or it uses sudo.
#   scripts/bootstrap.sh           what the test suite needs (scripts/test.sh): Debian's gearmand,
#                                  memcached, wrk and the real backends (MariaDB, PostgreSQL,
#                                  RabbitMQ, Redis, Mosquitto, OpenSSH's sshd), MariaDB's client
#                                  library and gcc (to build mysqlclient), and .venv with the
#                                  project and every extra (dev)
#   scripts/bootstrap.sh --demo    what the demo needs (scripts/demo.sh): Debian's gearmand, and
#                                  .venv with the library and the gearman and server extras
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
    "") ;;
    --demo) mode=demo ;;
    *) echo "bootstrap: unknown option '$1' (usage: scripts/bootstrap.sh [--demo])" >&2; exit 2 ;;
esac

need_apt=()
command -v gearmand >/dev/null 2>&1 || [ -x /usr/sbin/gearmand ] || need_apt+=(gearman-job-server)
if [ "$mode" = full ]; then
    command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need_apt+=(memcached)
    command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
    # The real backends of tests/realclients (examples/support/backends starts each on a free port).
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
    [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)  # paramiko's proof (tests/realclients)
    # mysqlclient (the mysql extra) builds from source against MariaDB's client library.
    pkg-config --exists libmariadb 2>/dev/null || need_apt+=(libmariadb-dev pkg-config)
    command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
    # ... and Python's headers (Debian's python3 ships them in python3-dev).
    "${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || need_apt+=(python3-dev)
fi
PY=${PYTHON:-python3}
# Debian's python3 has no venv module (ensurepip) until python3-venv is installed.
if [ ! -x .venv/bin/python ] && [ "$PY" = python3 ] && ! python3 -c 'import ensurepip' 2>/dev/null
then
    need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "bootstrap: installing the Debian packages ${need_apt[*]} needs root, and sudo is" \
                "not installed: run this script as root, or install them yourself first" >&2
            exit 1
        fi
        SUDO="sudo"
    fi
    echo "bootstrap: installing Debian packages (apt-get, as root${SUDO:+ through sudo}):" \
        "${need_apt[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null
fi
# Where a service manager runs (a desktop or server Debian, not a container), Debian also starts
# the packaged daemons as system services; the project never uses them: it starts its own, on
# free loopback ports, with data in temporary directories. `systemctl disable --now gearman-job-server`
# (and the others) stops them if you do not want them.

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $($PY --version)" >&2
    $PY -m venv .venv
fi
full_stamp=.venv/.safeclients-installed
if [ "$mode" = demo ]; then
    # A .venv that the full bootstrap made already has everything the demo needs. Otherwise a
    # regular (not editable) install: the demo runs from the repository root, whose packages
    # come first on sys.path; reinstalled when the library or pyproject.toml changes.
    stamp=.venv/.safeclients-demo-installed
    if [ -f "$full_stamp" ]; then exit 0; fi  # (scripts/test.sh keeps that one up to date)
    if [ ! -f "$stamp" ] || [ -n "$(find pyproject.toml safeclients -newer "$stamp" | head -n 1)" ]; then
        echo "bootstrap: installing into .venv: safeclients[gearman,server] (wrapt, pygearman," \
            "httptools)" >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check '.[gearman,server]'
        touch "$stamp"
    fi
    exit 0
fi
if [ ! -f "$full_stamp" ] || [ pyproject.toml -nt "$full_stamp" ]; then
    echo "bootstrap: installing the project and its extras into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$full_stamp"
fi
# gearman3 (the package the design card names) imports as `gearman`, like pygearman: it lives
# in a side folder that only the gearman3 shim test (safeclients.contrib.gearman) puts on sys.path.
if [ ! -d .venv/gearman3/gearman ]; then
    echo "bootstrap: installing gearman3 0.2.1 into .venv/gearman3 (for the shim test)" >&2
    .venv/bin/python -m pip install -q --no-deps --target .venv/gearman3 gearman3==0.2.1
fi
