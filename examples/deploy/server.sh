#!/usr/bin/env bash
# Serve a Gearman example on OUR server (server/), the way the demo does: 2 worker processes x 8
# request threads each, all accept()ing on one socket.
#
# Globals and forks: like uWSGI's default, the master imports the app ONCE and then forks, so every
# module-global is built in the master and inherited by each worker (--lazy-apps imports it in
# each worker instead). Each worker then runs 8 threads over the same globals: a plain global
# client is shared by 8 threads (the trap); one that connected at import time is also shared by
# the 2 workers (the fork trap). The safeclients proxies give each worker, and per_thread each
# thread, a client of its own.
#
#   GEARMAN_SERVERS=127.0.0.1:4730 examples/deploy/server.sh [APP] [extra server options]
#   APP defaults to examples.gearman.app_per_thread:application; BIND to 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/../.."
APP=${1:-examples.gearman.app_per_thread:application}
shift || true
exec .venv/bin/python -m server "$APP" --bind "${BIND:-127.0.0.1:8000}" --workers 2 --threads 8 "$@"
