#!/usr/bin/env bash
# The README's demo: the Gearman demo, the shared-client trap under our prefork-threaded
# server and each fix, on real gearmand (python -m examples.demo; about a minute).
#
# It installs only what it needs, and says so before it does: Debian's gearman-job-server
# (gearmand; apt-get needs root, so it uses sudo when not run as root) and a virtualenv in .venv
# with the library and its gearman and server extras (wrapt, pygearman, httptools).
# scripts/test.sh installs the rest (scripts/bootstrap.sh without --demo).
#   scripts/demo.sh [--requests N] [--concurrency C] [--variants unsafe,per_thread,...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --demo
exec .venv/bin/python -m examples.demo "$@"
