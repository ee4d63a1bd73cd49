#!/usr/bin/env bash
# The README's first command: set up what a fresh machine lacks (Debian gearmand, the venv), then
# run the Gearman demo: the shared-client trap under our prefork-threaded server, and each fix.
#   scripts/demo.sh [--requests N] [--concurrency C] [--variants unsafe,per_thread,...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m examples.demo "$@"
